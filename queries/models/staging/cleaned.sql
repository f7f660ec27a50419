{{ terceirizados_cleaned(ref('raw')) }}

{{ terceirizados_cleaned(ref('historic_raw')) }}

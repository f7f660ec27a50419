{{ terceirizados_renamed(ref('historic_cleaned')) }}

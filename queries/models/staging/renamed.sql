{{ terceirizados_renamed(ref('cleaned')) }}

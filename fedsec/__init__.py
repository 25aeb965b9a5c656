"""fedsec's command line for data holders, the model team and researchers (`fedsec --help`)."""

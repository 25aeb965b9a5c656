"""`python -m fedsec ...`: the same command line as the `fedsec` console script."""

from fedsec.cli import main

main()

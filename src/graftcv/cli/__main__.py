"""`python -m graftcv.cli`: the same as the `graftcv` console script."""

from graftcv.cli import main

main()

"""`python -m vdm_fast.evaluation ...`: the same as `python cli.py evaluate ...`."""

from .command import main

main()

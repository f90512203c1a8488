"""`python -m aerodrome.cli ...`: the same as the `aerodrome` command."""

from aerodrome.cli import main

raise SystemExit(main())

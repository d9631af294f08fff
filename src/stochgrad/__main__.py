from stochgrad.cli import main

raise SystemExit(main())

from vprbench.cli.main import main

raise SystemExit(main())

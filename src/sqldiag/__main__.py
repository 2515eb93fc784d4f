from sqldiag.cli import main

raise SystemExit(main())

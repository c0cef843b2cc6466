from tinysplit.cli import main

raise SystemExit(main())

from gantry.cli import main

raise SystemExit(main())

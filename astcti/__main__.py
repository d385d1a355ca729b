from astcti.cli import main

raise SystemExit(main())

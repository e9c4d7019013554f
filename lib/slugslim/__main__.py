from slugslim.cli import main

raise SystemExit(main())

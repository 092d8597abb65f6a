from spdnas.cli import main

raise SystemExit(main())

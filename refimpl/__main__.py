from refimpl.generate import main

raise SystemExit(main())

"""One module per console screen; `PAGES` in `appliance.tui.app` orders them."""

"""The Textual operator console (`appliance tui`).

Screens under `screens/`, shared widgets under `widgets/`. The console calls only the service
layer (`appliance.service.*`), always from thread workers that post messages back, so a key
press is answered while long work runs. Nothing here is imported by the core or the CLI at
start-up: `appliance tui` imports Textual inside its handler.
"""

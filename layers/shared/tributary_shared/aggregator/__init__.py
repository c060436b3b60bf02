"""The fleet aggregator pipeline (functions/aggregator): tumbling-window figures per unicorn.

- `aggregator`: the function: one invocation handled, logged and published as metrics;
- `settings`: what the function reads from its environment, once, at cold start;
- `window_handler`: one invocation's work: fold a batch into the window's state, or store a closed window;
- `readings`, `figures`, `window_state`: a checked reading, the per-unicorn figures, and the window
  state Lambda carries between invocations;
- `sink`: where a closed window goes (the UnicornAggregation table and the summary stream).
"""

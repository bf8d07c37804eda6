"""The engines: one module each, each a subclass of engine.Engine registered in
runner.ENGINES. What each measures: docs/method.md."""

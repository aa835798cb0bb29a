"""The dev stack: embedded servers and sample videos for the demo, the dev stack and the tests."""

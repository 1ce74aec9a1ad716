"""Coverage-guided fuzzing of the gateway's parsers of untrusted bytes (atheris/libFuzzer).

``python -m fuzz --list``; ``python -m fuzz TARGET --seconds N``; ``python -m fuzz all
--seconds N``. See fuzz/README.md. Kept out of the wheel: run it from the repository root.
"""

"""One target under atheris, in its own process: ``python -m fuzz._worker TARGET ARGS...``.

The target module (and through it the gateway's parsers) is imported inside
``atheris.instrument_imports`` so libFuzzer sees their coverage. Inputs run are
counted here and printed as ``fuzz-inputs: N`` when an input crashes (libFuzzer's
final stats give the count of a run that ends on time).
"""

from __future__ import annotations

import sys

import atheris  # type: ignore[import-untyped]  # ships no type information

INSTRUMENTED = ["gateway", "protocols", "asn1crypto", "josepy", "fuzz.targets"]


def main() -> None:
    name, *libfuzzer_args = sys.argv[1:]
    from fuzz.targets import TARGETS

    with atheris.instrument_imports(include=INSTRUMENTED):
        import importlib

        module = importlib.import_module(TARGETS[name])
    count = 0

    def report() -> None:
        print(f"fuzz-inputs: {count}", file=sys.stderr, flush=True)

    def one(data: bytes) -> None:
        nonlocal count
        count += 1
        try:
            module.test_one_input(data)
        except BaseException:
            report()
            raise

    atheris.Setup([sys.argv[0], *libfuzzer_args], one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()

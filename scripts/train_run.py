"""Launch a training run exactly as `vocalsep train` does (used for the shipped models' runs).

    python scripts/train_run.py ARCH OUT_DIR [key=value ...]
"""
import sys

from vocalsep.cli import main

if __name__ == "__main__":
    main(["train", *sys.argv[1:]])

"""Occlusion statistics of a prepared synthetic dataset.

    python -m data_loaders.synthetic.stats synthetic/small [--data-dir DIR]

Prints, per split, the share of frames with at least one occluded finger and with the whole
hand occluded (the paper's labels as stored in the records).
"""

from __future__ import annotations

import argparse

import numpy as np


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help="synthetic/tiny, synthetic/small or synthetic/default")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args(argv)
    import tensorflow_datasets as tfds

    import data_loaders.synthetic  # noqa: F401  (registers the builder)
    from data_loaders.synthetic import occlusion_shares

    builder = tfds.builder(args.name, data_dir=args.data_dir)
    if not builder.is_prepared():
        raise SystemExit(f"error: {args.name} is not prepared in {builder.data_dir}; "
                         "run python -m experiments.train once or builder.download_and_prepare()")
    results = {}
    for split in builder.info.splits:
        source = builder.as_data_source(split)
        shares = occlusion_shares([{"occ_labels": np.asarray(source[i]["occ_labels"])} for i in range(len(source))])
        results[split] = shares
        print(f"{args.name} {split}: {shares['frames']} frames, {100 * shares['any_finger_occluded']:.1f} % with "
              f">= 1 occluded finger, {100 * shares['hand_occluded']:.1f} % with the whole hand occluded")
    return results


if __name__ == "__main__":
    main()

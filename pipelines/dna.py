"""DNA, one generation (SPEC sections 4-6, 9) as a Kubeflow pipeline.

    python pipelines/dna.py                                  # run here (KFP local runner)
    python pipelines/dna.py --compile dna.yaml               # YAML for the KFP UI
    python pipelines/dna.py --host https://KFP [--schedule '0 0 3 * * *']

teacher -> block supernets (Ray, one job per block) -> rating (Ray) -> final stage (search ->
retrain -> transfer -> summary). ``--help`` lists every flag; see README.md "Pipelines".
"""

import os
import sys

if __name__ == "__main__":  # run as a script: this folder must not shadow the `dna` package
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]
    sys.path.insert(0, os.path.dirname(_here))

from pipelines import cli  # noqa: E402
from pipelines.graph import BuildOptions, build_pipeline  # noqa: E402

NAME = "dna"
DESCRIPTION = "DNA: block-wise supervised NAS, one generation (teacher, block supernets, rating, search, retrain, transfer)"


def build(generations: int = 1, opts: BuildOptions | None = None):
    """The DNA pipeline (one generation; ``generations`` is accepted for a uniform interface)."""
    return build_pipeline(NAME, 1, opts, DESCRIPTION)


pipeline = build()


def main(argv=None, **kw) -> int:
    return cli.main(argv, prog="pipelines/dna.py", description=DESCRIPTION, build=build, **kw)


if __name__ == "__main__":
    sys.exit(main())

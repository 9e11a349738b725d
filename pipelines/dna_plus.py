"""DNA+ (SPEC section 7): generations of search, each one's scaled search teaching the next.

    python pipelines/dna_plus.py --generations 3             # run here (make demo)
    python pipelines/dna_plus.py --generations 3 --compile dna_plus.yaml
    python pipelines/dna_plus.py --host https://KFP [--schedule '0 0 3 * * *']

Generation 0 learns from the given (or here trained) teacher; generation g < N-1 ends with
search -> compound scaling + retraining, which is generation g+1's teacher; the last generation
ends with the final stage (search -> retrain -> transfer -> summary). The DAG is unrolled with a
Python loop at compile time, so ``--generations`` is fixed in a compiled YAML.
"""

import os
import sys

if __name__ == "__main__":  # run as a script: this folder must not shadow the `dna` package
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]
    sys.path.insert(0, os.path.dirname(_here))

from pipelines import cli  # noqa: E402
from pipelines.graph import BuildOptions, build_pipeline  # noqa: E402

NAME = "dna-plus"
DEFAULT_GENERATIONS = 3
DESCRIPTION = "DNA+: progressive teacher generations (search, scale, retrain, next teacher), then the final stage"


def build(generations: int = DEFAULT_GENERATIONS, opts: BuildOptions | None = None):
    """The DNA+ pipeline with ``generations`` generations."""
    return build_pipeline(NAME, generations, opts, f"{DESCRIPTION} ({generations} generations)")


def main(argv=None, **kw) -> int:
    return cli.main(argv, prog="pipelines/dna_plus.py", description=DESCRIPTION, build=build,
                       default_generations=DEFAULT_GENERATIONS, **kw)


if __name__ == "__main__":
    sys.exit(main())

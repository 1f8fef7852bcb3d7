"""Train DiffLM stages: python train.py stage=vae|prior|decoder|all data=adult model=smollm2 run=runs/adult ..."""

import sys

from difflm.config import compose, upstream_notice
from difflm.errors import exit_on_user_error
from difflm.pipeline import train


@exit_on_user_error
def main(argv):
    cfg = compose(argv)
    notice = upstream_notice(cfg, argv)
    if notice:
        print(notice, file=sys.stderr)
    return train(cfg)


if __name__ == "__main__":
    main(sys.argv[1:])

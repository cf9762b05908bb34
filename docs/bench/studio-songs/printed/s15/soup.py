"""Session 15: the mean of two stemunet models' weights, weight by weight, on the first one's
configuration, stored with int8 convolutions as the shipped models are (a "model soup").

    git show 10c8066:candidates/p3-int8.pt > /tmp/p3-int8.pt     # P epoch 3
    python soup.py /tmp/p3-int8.pt 0.5 -o vocalsep/pretrained/default.pt   # (1 - 0.5) P + 0.5 hq

Weights and norm statistics are averaged; the result keeps the first model's configuration
(640 bins). ``--with`` names the second model (default ``hq``).
"""
import argparse

from vocalsep.models import load, save

p = argparse.ArgumentParser()
p.add_argument("first")
p.add_argument("share", type=float, help="the second model's share, 0..1")
p.add_argument("--with", dest="second", default="hq")
p.add_argument("-o", "--out", required=True)
args = p.parse_args()
first, second = load(args.first), load(args.second)
theirs = second.state_dict()
first.load_state_dict({k: (1 - args.share) * v.float() + args.share * theirs[k].float()
                       if v.is_floating_point() else v for k, v in first.state_dict().items()})
save(first, args.out, meta={**first.meta, "soup": f"{1 - args.share:g} x {args.first} + "
                            f"{args.share:g} x {args.second}"}, half=True, int8=True)
print(args.out)

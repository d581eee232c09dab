"""Fine-tune a trained model on your own images and masks, then package the result as a model folder.

    python examples/finetune_folder.py DATA --init-from MODEL --work-dir runs/mine [--iters 500]

DATA is a folder dataset: DATA/images/{train,val}/*.jpg|png, DATA/masks/{train,val}/*.png (class ids, same
file stems) and DATA/classes.yaml (`names: [background, road, car]`). MODEL (a checkpoint or model folder)
must have as many classes as classes.yaml; without --init-from the model trains from scratch.
"""

import argparse
from pathlib import Path

import reseg


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="folder dataset root")
    parser.add_argument("--init-from", default=None, help="checkpoint or model folder to start from")
    parser.add_argument("--work-dir", type=Path, required=True, help="checkpoints, logs and the model folder go here")
    parser.add_argument("--iters", type=int, default=500, help="training iterations")
    parser.add_argument("--batch", type=int, default=4, help="images per iteration")
    parser.add_argument("--crop", type=int, nargs=2, default=[360, 480], metavar=("H", "W"), help="training crop")
    parser.add_argument("--lr", type=float, default=1e-4, help="learning rate (small: the weights are trained)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    args = parser.parse_args()

    # the architecture must be the starting model's, or its weights do not fit
    model_settings = {"name": "reseg"}
    if args.init_from:
        model_settings = reseg.load(args.init_from, device="cpu").config.to_dict()["model"]
    config = {
        "data": {
            "dataset": "folder",
            "root": args.data,
            "crop_size": args.crop,
            "batch_size": args.batch,
            "num_workers": 0,
        },
        "model": model_settings,
        "optim": {"name": "adamw", "lr": args.lr},
        "train": {
            "max_iters": args.iters,
            "val_interval": args.iters,
            "checkpoint_interval": args.iters,
            "init_from": args.init_from,
            "device": args.device,
        },
    }
    result = reseg.train(config, args.work_dir, overwrite=True)
    print(f"training {result['status']} at iteration {result['iteration']}, best val mIoU {result['best_mIoU']}")
    folder = reseg.package(args.work_dir / "best.pt", args.work_dir / "model", overwrite=True)
    print(f"model folder: {folder} (load it with reseg.load({str(folder)!r}))")


if __name__ == "__main__":
    main()

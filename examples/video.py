"""Segment a video frame by frame and write the overlay video.

    python examples/video.py MODEL INPUT OUTPUT [--max-frames N] [--device cpu]

A plain OpenCV loop, to adapt for your own processing; `reseg video` does the same with batching,
a faster decoder, temporal smoothing, a legend and speed statistics.
"""

import argparse

import cv2

import reseg


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="checkpoint, model folder or hf://user/repo")
    parser.add_argument("input", help="video file (or a camera index such as 0)")
    parser.add_argument("output", help="overlay video to write (.avi: MJPG, .mp4: mp4v)")
    parser.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    args = parser.parse_args()

    model = reseg.load(args.model, device=args.device)
    video = cv2.VideoCapture(int(args.input) if args.input.isdigit() else args.input)
    if not video.isOpened():
        raise SystemExit(f"cannot open {args.input}")
    fps = video.get(cv2.CAP_PROP_FPS) or 30.0
    writer = None
    frames = 0
    while args.max_frames is None or frames < args.max_frames:
        ok, bgr = video.read()
        if not ok:
            break
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)  # reseg takes RGB; OpenCV reads BGR
        blended = model.overlay(rgb, model(rgb))
        if writer is None:
            codec = "mp4v" if args.output.lower().endswith(".mp4") else "MJPG"
            writer = cv2.VideoWriter(args.output, cv2.VideoWriter_fourcc(*codec), fps, (rgb.shape[1], rgb.shape[0]))
        writer.write(cv2.cvtColor(blended, cv2.COLOR_RGB2BGR))
        frames += 1
    video.release()
    if writer is not None:
        writer.release()
    print(f"wrote {frames} frame(s) to {args.output}")


if __name__ == "__main__":
    main()

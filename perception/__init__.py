"""perception: what the cameras see, in the robot's base frame. It owns camera sources (USB devices,
video files, image folders, the sim's cameras), calibration files (intrinsics, extrinsics), the marker
(ArUco/AprilTag) and colour-blob trackers with per-pose covariance, the object-pose node that publishes
`perception/objects`, displacement measurement for experiments, and the `loopylab camera` commands
(calibrate, handeye, view). It never knows which driver is behind the bus.
"""

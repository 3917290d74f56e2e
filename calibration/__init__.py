"""Camera calibration for df_policy: ChArUco intrinsics and hand-eye (eye-in-hand / eye-to-hand).

Modules: ``board`` (board spec + printable image), ``detection`` (ChArUco corners, PnP),
``intrinsics`` (camera model calibration), ``hand_eye`` (cv2.calibrateHandEye + residuals),
``io`` (YAML files and loaders), ``render`` / ``synthetic`` (ground-truth test data),
``transforms`` (4x4 SE(3) helpers), ``cli`` (``dfp calib ...``).
Units: metres, radians (``_mm`` / ``_deg`` / ``_px`` suffixes say otherwise);
``T_a_b`` is the pose of frame ``b`` in frame ``a`` (4x4).
"""

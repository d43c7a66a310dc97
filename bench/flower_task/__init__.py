"""The digits task under Flower: an external reference for the federation suite.

Runs in its own venv (``.venv-flower``, scripts/flower-venv.sh) because flwr pins protobuf and
grpcio versions that conflict with hefl's. It imports only numpy and flwr: nothing of hefl.
The data split and initial weights come from hefl's examples/digits.py, exported to an .npz
file by bench/suites/flower.py; the MLP is trained in numpy (no torch in that venv).
"""

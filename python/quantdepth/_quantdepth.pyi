"""Type stubs of the native module quantdepth._quantdepth (PyO3).

A thin skin over the Rust library: plain dicts and lists, which the public
functions in ``quantdepth`` turn into numpy arrays. Use those instead.
"""

from typing import Any, Dict, List, Optional, Sequence, Tuple, TypedDict, Union

__version__: str
PLOTS: bool

class NetKw(TypedDict):
    n_states: Optional[int]
    W_std: Optional[float]
    b_std: Optional[float]
    q0: Optional[float]
    spacing: Optional[float]
    amplitude: Optional[float]
    activation: Optional[str]
    levels: Optional[List[float]]
    thresholds: Optional[List[float]]

def optimal_init(
    n_states: Optional[int],
    bits: Optional[int],
    amplitude: float,
    b_std: float,
    kappa: float,
    ste_threshold: float,
) -> Dict[str, Any]: ...
def optimal(n_states: Union[str, Sequence[int]], kappa: float) -> Dict[str, List[Any]]: ...
def scaling(n_states: Union[str, Sequence[int]]) -> Dict[str, Any]: ...
def curve(net: NetKw, depth: int, c0: Sequence[float]) -> Dict[str, Any]: ...
def finite_width(
    net: NetKw,
    c0: float,
    depth: int,
    width: Sequence[int],
    pairs: int,
    weights: str,
    ste_threshold: Optional[float],
    ste_slope: Optional[float],
) -> Dict[str, Any]: ...
def backward(
    net: NetKw,
    depth: int,
    c0: float,
    ste_threshold: float,
    ste_slope: Optional[float],
    grad_c_out: float,
) -> Dict[str, Any]: ...
def simulate(
    net: NetKw,
    c0: Sequence[float],
    width: int,
    depth: int,
    samples: int,
    pairs: int,
    seed: int,
    backend: str,
    kernel: Optional[str],
    weights: str,
) -> Dict[str, Any]: ...
def run(
    config_path: str,
    out: Optional[str],
    backend: Optional[str],
    seed: Optional[int],
    kernel: Optional[str],
) -> Tuple[str, bool, str]: ...

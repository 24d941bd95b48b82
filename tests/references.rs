//! The Python references themselves: they agree with independent computations (knots, static
//! models, PyTorch).

use crate::util::*;

#[test]
fn python_references_are_self_consistent() {
    let torch = torch_fixture();
    run_python("selfcheck.py", &[&"--torch", &torch]);
}

//! Binding by name: `Engine::dispatch` binds each tensor to the WGSL variable it names and checks
//! names, access and element type against naga's reflection of the entry point.

use crate::gpu;
use latent::engine::Shader;
use latent::{Bind, BindingProblem, DType, Engine, Error, Grid, Tensor};

/// `y = 2·x + w + labels` over `n` elements; `x4` (binding 0 seen as vec4s) and `bits` are used by
/// the other entry points only.
const SHADER: Shader = Shader {
    name: "binding_test",
    source: r#"
struct Params { n: u32, _pad0: u32, _pad1: u32, _pad2: u32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<u32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;
@group(0) @binding(0) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> bits: array<u32>;

@compute @workgroup_size(64)
fn axpy(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.x;
    if i < p.n {
        y[i] = 2.0 * x[i] + w[i] + f32(labels[i]);
    }
}

// y[4i..4i+3] = x4[i]
@compute @workgroup_size(64)
fn copy4(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.x;
    if i < p.n / 4u {
        let v = x4[i];
        y[4u * i] = v.x; y[4u * i + 1u] = v.y; y[4u * i + 2u] = v.z; y[4u * i + 3u] = v.w;
    }
}

// bits[i] = labels[i] (moves bits; an f32 tensor may bind here through Bind::words)
@compute @workgroup_size(64)
fn move_bits(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.x;
    if i < p.n {
        bits[i] = labels[i];
    }
}
"#,
};

const N: usize = 8;

struct Inputs {
    x: Tensor,
    w: Tensor,
    labels: Tensor,
    y: Tensor,
}

fn inputs(e: &Engine) -> Inputs {
    let x: Vec<f32> = (0..N).map(|i| i as f32).collect();
    let w: Vec<f32> = (0..N).map(|i| 100.0 * i as f32).collect();
    let labels: Vec<u32> = (0..N as u32).map(|i| 1000 * i).collect();
    Inputs {
        x: Tensor::from_slice(e, &x, &[N]).unwrap(),
        w: Tensor::from_slice(e, &w, &[N]).unwrap(),
        labels: Tensor::from_slice(e, &labels, &[N]).unwrap(),
        y: Tensor::zeros(e, &[N], DType::F32).unwrap(),
    }
}

fn params() -> [u32; 4] {
    [N as u32, 0, 0, 0]
}

/// `axpy`'s four tensors, each named by its variable, with `change` in place of the one of the
/// same name (or added, when no variable has its name).
fn axpy<'a>(t: &'a Inputs, change: Option<Bind<'a>>) -> Vec<Bind<'a>> {
    let mut all = vec![
        Bind::read("x", &t.x),
        Bind::read("w", &t.w),
        Bind::read("labels", &t.labels),
        Bind::write("y", &t.y),
    ];
    if let Some(c) = change {
        match all.iter_mut().find(|b| b.name == c.name) {
            Some(b) => *b = c,
            None => all.push(c),
        }
    }
    all
}

fn dispatch(e: &Engine, entry: &'static str, tensors: &[Bind]) -> latent::Result<()> {
    let p = params();
    e.dispatch(
        &SHADER,
        entry,
        &[],
        tensors,
        bytemuck::bytes_of(&p),
        Grid::Linear(1),
    )
}

/// The problem of a refused dispatch, after checking that its message names the entry point
/// and the variable.
fn refused(result: latent::Result<()>, variable: &str) -> BindingProblem {
    match result {
        Err(err @ Error::Binding { .. }) => {
            let message = err.to_string();
            assert!(
                message.contains("binding_test::") && message.contains(&format!("`{variable}`")),
                "the message names the entry point and `{variable}`: {message}"
            );
            let Error::Binding { problem, .. } = err else {
                unreachable!()
            };
            problem
        }
        other => panic!("expected Error::Binding about `{variable}`, got {other:?}"),
    }
}

#[test]
fn named_tensors_bind_to_their_variables_in_any_order() {
    let e = gpu!();
    let t = inputs(e);
    // Listed backwards: the names, not the order, decide where each tensor goes.
    let mut binds = axpy(&t, None);
    binds.reverse();
    dispatch(e, "axpy", &binds).unwrap();
    let want: Vec<f32> = (0..N).map(|i| 1102.0 * i as f32).collect();
    assert_eq!(t.y.to_vec::<f32>().unwrap(), want);
}

#[test]
fn a_same_type_name_of_another_entry_point_is_refused() {
    let e = gpu!();
    let t = inputs(e);
    // `x4` is an f32 view at x's binding, but `axpy` reads `x`: naming the other view (as a
    // swap of x and x4 between two entry points would) is refused, not bound by position.
    let mut binds = axpy(&t, None);
    binds[0] = Bind::read("x4", &t.x);
    match refused(dispatch(e, "axpy", &binds), "x4") {
        BindingProblem::Unused { variable, used } => {
            assert_eq!(variable, "x4");
            assert_eq!(used, ["x", "w", "labels", "y"]);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_missing_name_is_refused() {
    let e = gpu!();
    let t = inputs(e);
    let mut binds = axpy(&t, None);
    binds.retain(|b| b.name != "w");
    let problem = refused(dispatch(e, "axpy", &binds), "w");
    assert!(
        matches!(&problem, BindingProblem::Missing { variable, .. } if variable == "w"),
        "{problem:?}"
    );
}

#[test]
fn an_extra_or_repeated_name_is_refused() {
    let e = gpu!();
    let t = inputs(e);
    let extra = axpy(&t, Some(Bind::read("z", &t.w)));
    let problem = refused(dispatch(e, "axpy", &extra), "z");
    assert!(
        matches!(&problem, BindingProblem::Unused { variable, .. } if variable == "z"),
        "{problem:?}"
    );
    let mut twice = axpy(&t, None);
    twice.push(Bind::read("w", &t.x));
    let problem = refused(dispatch(e, "axpy", &twice), "w");
    assert!(
        matches!(&problem, BindingProblem::Duplicate { variable } if variable == "w"),
        "{problem:?}"
    );
}

#[test]
fn a_wrong_access_is_refused() {
    let e = gpu!();
    let t = inputs(e);
    // An input the kernel only reads, bound as an output: the caller would wait for a result
    // that never comes.
    let binds = axpy(&t, Some(Bind::write("x", &t.x)));
    let problem = refused(dispatch(e, "axpy", &binds), "x");
    assert!(
        matches!(
            problem,
            BindingProblem::Access {
                declared: "read",
                requested: "read_write",
                ..
            }
        ),
        "{problem:?}"
    );
    // An output bound as an input: the kernel would overwrite a tensor the caller thinks is
    // left alone.
    let binds = axpy(&t, Some(Bind::read("y", &t.y)));
    let problem = refused(dispatch(e, "axpy", &binds), "y");
    assert!(
        matches!(
            problem,
            BindingProblem::Access {
                declared: "read_write",
                requested: "read",
                ..
            }
        ),
        "{problem:?}"
    );
}

#[test]
fn a_wrong_element_type_is_refused() {
    let e = gpu!();
    let t = inputs(e);
    // An f32 tensor for the u32 labels.
    let binds = axpy(&t, Some(Bind::read("labels", &t.w)));
    match refused(dispatch(e, "axpy", &binds), "labels") {
        BindingProblem::ElementType {
            view, reads, got, ..
        } => assert_eq!((view.as_str(), reads, got), ("u32", "u32", "f32")),
        other => panic!("{other:?}"),
    }
    // A u32 tensor for the f32 x.
    let binds = axpy(&t, Some(Bind::read("x", &t.labels)));
    let problem = refused(dispatch(e, "axpy", &binds), "x");
    assert!(
        matches!(
            problem,
            BindingProblem::ElementType {
                reads: "f32",
                got: "u32",
                ..
            }
        ),
        "{problem:?}"
    );
}

#[test]
fn vec4_views_take_f32_tensors_of_whole_vec4s() {
    let e = gpu!();
    let t = inputs(e);
    // A vec4<f32> view reads f32 tensors, four elements at a time.
    dispatch(
        e,
        "copy4",
        &[Bind::read("x4", &t.x), Bind::write("y", &t.y)],
    )
    .unwrap();
    let want: Vec<f32> = (0..N).map(|i| i as f32).collect();
    assert_eq!(t.y.to_vec::<f32>().unwrap(), want);
    // Six floats are not a whole number of vec4s: arrayLength would drop the last two.
    let six = Tensor::zeros(e, &[6], DType::F32).unwrap();
    let problem = refused(
        dispatch(
            e,
            "copy4",
            &[Bind::read("x4", &six), Bind::write("y", &t.y)],
        ),
        "x4",
    );
    assert!(
        matches!(
            problem,
            BindingProblem::Length {
                view_bytes: 16,
                bytes: 24,
                ..
            }
        ),
        "{problem:?}"
    );
}

#[test]
fn integer_views_take_other_tensors_only_as_words() {
    let e = gpu!();
    let t = inputs(e);
    // `bits` is a u32 view: an f32 tensor binds there only when the launcher says it moves bits.
    let problem = refused(
        dispatch(
            e,
            "move_bits",
            &[Bind::read("labels", &t.labels), Bind::write("bits", &t.y)],
        ),
        "bits",
    );
    assert!(
        matches!(problem, BindingProblem::ElementType { .. }),
        "{problem:?}"
    );
    dispatch(
        e,
        "move_bits",
        &[
            Bind::read("labels", &t.labels),
            Bind::write("bits", &t.y).words(),
        ],
    )
    .unwrap();
    let got: Vec<u32> =
        t.y.to_vec::<f32>()
            .unwrap()
            .iter()
            .map(|v| v.to_bits())
            .collect();
    let want: Vec<u32> = (0..N as u32).map(|i| 1000 * i).collect();
    assert_eq!(got, want);
}

#[test]
fn params_must_fill_the_uniform_and_not_outgrow_its_padding() {
    let e = gpu!();
    let t = inputs(e);
    let binds = axpy(&t, None);
    // The uniform takes 16 bytes: 8 are too few, 32 more than its padding allows.
    for got in [8u64, 32] {
        let params = vec![0u8; got as usize];
        let err = e.dispatch(&SHADER, "axpy", &[], &binds, &params, Grid::Linear(1));
        assert!(
            matches!(
                err,
                Err(Error::Binding {
                    problem: BindingProblem::Params { expected: 16, got: g },
                    ..
                }) if g == got
            ),
            "{err:?}"
        );
    }
}

//! Every `.wgsl` in `shaders/` must parse and validate with naga, and every shader has its
//! launcher and test module (the kernel triad).

use std::path::Path;

fn shader_files() -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("shaders/ exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wgsl"))
        .collect();
    files.sort();
    files
}

/// Each kernel family's shader as the engine compiles it (some are composed of several files).
#[test]
fn every_shader_parses_and_validates_with_naga() {
    let mut failures = Vec::new();
    for shader in latent::kernels::SHADERS {
        let (name, source) = (shader.name, shader.source);
        let module = match naga::front::wgsl::parse_str(source) {
            Ok(m) => m,
            Err(e) => {
                failures.push(format!("{name}: {}", e.emit_to_string(source)));
                continue;
            }
        };
        if let Err(e) = naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::all(),
        )
        .validate(&module)
        {
            failures.push(format!("{name}: {}", e.emit_to_string(source)));
        }
        assert!(!module.entry_points.is_empty(), "{name} has no entry point");
    }
    assert!(
        failures.is_empty(),
        "invalid shaders:\n{}",
        failures.join("\n")
    );
}

#[test]
fn every_shader_file_is_compiled_by_a_kernel_family() {
    let names: Vec<&str> = latent::kernels::SHADERS.iter().map(|s| s.name).collect();
    for path in shader_files() {
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        assert!(
            names.contains(&name.as_str()),
            "{name}.wgsl is not in latent::kernels::SHADERS"
        );
    }
}

#[test]
fn every_shader_has_a_launcher_and_a_test() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for path in shader_files() {
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        assert!(
            root.join(format!("src/kernels/{name}.rs")).exists(),
            "no launcher for {name}"
        );
        assert!(
            root.join(format!("kernels-tests/{name}.rs")).exists(),
            "no test for {name}"
        );
    }
}

/// Every fragment in a folder of `shaders/` is composed into some shader by `shader!` (a
/// fragment nothing includes is dead code that naga never validates).
#[test]
fn every_shader_fragment_is_composed_into_a_shader() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut unused = Vec::new();
    for folder in std::fs::read_dir(&dir).expect("shaders/ exists") {
        let folder = folder.unwrap().path();
        if !folder.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(&folder).unwrap() {
            let path = file.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            if !latent::kernels::SHADERS
                .iter()
                .any(|s| s.source.contains(&text))
            {
                unused.push(path.display().to_string());
            }
        }
    }
    assert!(unused.is_empty(), "fragments in no shader: {unused:?}");
}

//! WGSL modules and compute pipelines, compiled once and cached; bind-group layouts come from
//! naga's reflection of what each entry point really uses. Tested by `kernels-tests/shaders.rs`.

use super::{DType, Error, Result};
use std::collections::HashMap;
use std::sync::Arc;

/// A kernel family's WGSL source, composed from files of `shaders/` by `shader!`.
#[derive(Clone, Copy, Debug)]
pub struct Shader {
    pub name: &'static str,
    pub source: &'static str,
}

/// How an entry point uses one binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Slot {
    Read,
    ReadWrite,
    Uniform,
}

/// One binding an entry point uses, as naga reflects it.
#[derive(Clone, Debug)]
pub(crate) struct Binding {
    pub(crate) index: u32,
    /// The WGSL variable.
    pub(crate) name: String,
    pub(crate) slot: Slot,
    pub(crate) view: View,
}

/// What a binding's WGSL type says about the buffer behind it.
#[derive(Clone, Debug)]
pub(crate) struct View {
    /// The element type as WGSL spells it (`f32`, `vec4<u64>`, `atomic<u32>`), or the uniform's
    /// struct name; for errors.
    pub(crate) wgsl: String,
    /// Bytes per array element (storage) or of the whole struct (uniform).
    pub(crate) bytes: u64,
    /// The tensor element type the view reads. Float views read f32. So do 64-bit integer views:
    /// WGSL has no f64, and the wide kernels load f32 bit patterns eight at a time through
    /// `vec4<u64>`. 32-bit integer and atomic views read u32. `None`: no tensor fits (f16).
    pub(crate) dtype: Option<DType>,
    /// A 32-bit integer view, which can also carry another 32-bit tensor's bits when the
    /// launcher asks for it ([`crate::engine::Bind::words`]).
    pub(crate) words: bool,
}

struct Module {
    module: wgpu::ShaderModule,
    /// Entry point name -> used bindings (group 0), in binding order.
    entries: HashMap<String, Vec<Binding>>,
}

/// (shader, entry point, override constants as bit patterns).
type PipelineKey = (&'static str, &'static str, Vec<(&'static str, u64)>);

#[derive(Default)]
pub(crate) struct Cache {
    modules: HashMap<&'static str, Module>,
    pipelines: super::FastMap<PipelineKey, Arc<Pipeline>>,
}

pub(crate) struct Pipeline {
    pub(crate) pipeline: wgpu::ComputePipeline,
    pub(crate) layout: wgpu::BindGroupLayout,
    /// Used bindings in binding order.
    pub(crate) bindings: Vec<Binding>,
}

fn scalar_wgsl(s: naga::Scalar) -> String {
    let kind = match s.kind {
        naga::ScalarKind::Float => "f",
        naga::ScalarKind::Uint => "u",
        naga::ScalarKind::Sint => "i",
        naga::ScalarKind::Bool => return "bool".into(),
        _ => return format!("{s:?}"),
    };
    format!("{kind}{}", 8 * s.width)
}

/// The [`View`] of a buffer whose elements (storage) or whole contents (uniform) are `ty`.
fn view(module: &naga::Module, ty: naga::Handle<naga::Type>) -> View {
    let t = &module.types[ty];
    let bytes = t.inner.size(module.to_ctx()) as u64;
    let (wgsl, scalar, atomic) = match t.inner {
        naga::TypeInner::Scalar(s) => (scalar_wgsl(s), Some(s), false),
        naga::TypeInner::Vector { size, scalar } => (
            format!("vec{}<{}>", size as u8, scalar_wgsl(scalar)),
            Some(scalar),
            false,
        ),
        naga::TypeInner::Atomic(s) => (format!("atomic<{}>", scalar_wgsl(s)), Some(s), true),
        _ => (
            t.name.clone().unwrap_or_else(|| "a struct".into()),
            None,
            false,
        ),
    };
    let integer =
        |s: naga::Scalar| matches!(s.kind, naga::ScalarKind::Uint | naga::ScalarKind::Sint);
    let dtype = scalar.and_then(|s| match (s.kind, s.width) {
        (naga::ScalarKind::Float, 4) => Some(DType::F32),
        (_, 8) if integer(s) && !atomic => Some(DType::F32),
        (_, 4) if integer(s) => Some(DType::U32),
        _ => None,
    });
    let words = scalar.is_some_and(|s| integer(s) && s.width == 4);
    View {
        wgsl,
        bytes,
        dtype,
        words,
    }
}

/// Parses and validates WGSL with naga; returns per-entry-point binding use.
pub(crate) fn reflect(name: &str, source: &str) -> Result<HashMap<String, Vec<Binding>>> {
    let invalid = |message: String| Error::Shader {
        name: name.to_string(),
        message,
    };
    let module =
        naga::front::wgsl::parse_str(source).map_err(|e| invalid(e.emit_to_string(source)))?;
    let info = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::all(),
    )
    .validate(&module)
    .map_err(|e| invalid(e.emit_to_string(source)))?;
    let mut entries = HashMap::new();
    for (i, ep) in module.entry_points.iter().enumerate() {
        let fi = info.get_entry_point(i);
        let mut bindings: Vec<Binding> = Vec::new();
        for (handle, var) in module.global_variables.iter() {
            let Some(binding) = &var.binding else {
                continue;
            };
            if fi[handle].is_empty() {
                continue;
            }
            let var_name = var.name.clone().unwrap_or_default();
            if binding.group != 0 {
                return Err(invalid(format!(
                    "`{}` uses group {}; only group 0",
                    ep.name, binding.group
                )));
            }
            let (slot, elem) = match var.space {
                naga::AddressSpace::Uniform => (Slot::Uniform, var.ty),
                naga::AddressSpace::Storage { access } => {
                    let slot = if access.contains(naga::StorageAccess::STORE) {
                        Slot::ReadWrite
                    } else {
                        Slot::Read
                    };
                    match module.types[var.ty].inner {
                        naga::TypeInner::Array { base, .. } => (slot, base),
                        _ => {
                            return Err(invalid(format!(
                                "storage variable `{var_name}` is not an array"
                            )));
                        }
                    }
                }
                _ => {
                    return Err(invalid(format!(
                        "binding {} is not a buffer",
                        binding.binding
                    )));
                }
            };
            if let Some(other) = bindings.iter().find(|b| b.index == binding.binding) {
                return Err(invalid(format!(
                    "`{}` uses `{}` and `{var_name}`, both at binding {}",
                    ep.name, other.name, binding.binding
                )));
            }
            bindings.push(Binding {
                index: binding.binding,
                name: var_name,
                slot,
                view: view(&module, elem),
            });
        }
        bindings.sort_by_key(|b| b.index);
        entries.insert(ep.name.clone(), bindings);
    }
    Ok(entries)
}

impl Cache {
    /// The pipeline for `shader`'s `entry` specialised with override `constants`.
    pub(crate) fn pipeline(
        &mut self,
        device: &wgpu::Device,
        shader: &Shader,
        entry: &'static str,
        constants: &[(&'static str, f64)],
    ) -> Result<Arc<Pipeline>> {
        let key = (
            shader.name,
            entry,
            constants
                .iter()
                .map(|(k, v)| (*k, v.to_bits()))
                .collect::<Vec<_>>(),
        );
        if let Some(p) = self.pipelines.get(&key) {
            return Ok(p.clone());
        }
        if !self.modules.contains_key(shader.name) {
            let entries = reflect(shader.name, shader.source)?;
            // naga accepted it above; the device may still refuse (e.g. a missing feature).
            let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
            let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(shader.name),
                source: wgpu::ShaderSource::Wgsl(shader.source.into()),
            });
            if let Some(e) = pollster::block_on(scope.pop()) {
                return Err(Error::Shader {
                    name: shader.name.to_string(),
                    message: e.to_string(),
                });
            }
            self.modules.insert(shader.name, Module { module, entries });
        }
        let m = &self.modules[shader.name];
        let bindings = m.entries.get(entry).cloned().ok_or_else(|| Error::Shader {
            name: shader.name.to_string(),
            message: format!("no entry point `{entry}`"),
        })?;
        let layout_entries: Vec<wgpu::BindGroupLayoutEntry> = bindings
            .iter()
            .map(|b| (b.index, b.slot))
            .map(|(binding, slot)| wgpu::BindGroupLayoutEntry {
                binding,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: match slot {
                    Slot::Uniform => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    Slot::Read | Slot::ReadWrite => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Storage {
                            read_only: slot == Slot::Read,
                        },
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                },
                count: None,
            })
            .collect();
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some(entry),
            entries: &layout_entries,
        });
        let pl = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(entry),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        // A bad override constant or a driver rejection becomes Error::Shader, not a panic.
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(entry),
            layout: Some(&pl),
            module: &m.module,
            entry_point: Some(entry),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants,
                ..Default::default()
            },
            cache: None,
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Shader {
                name: format!("{}::{entry}", shader.name),
                message: e.to_string(),
            });
        }
        let p = Arc::new(Pipeline {
            pipeline,
            layout,
            bindings,
        });
        self.pipelines.insert(key, p.clone());
        Ok(p)
    }
}

/// The one way to compose a [`Shader`]: `shader!("name", "a.wgsl", "b.wgsl")` is the listed
/// files of `shaders/` concatenated in order (shared fragments first, the family's kernels last).
macro_rules! shader {
    ($name:expr, $($file:expr),+ $(,)?) => {
        $crate::engine::Shader {
            name: $name,
            source: concat!($(include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/shaders/", $file))),+),
        }
    };
}
pub(crate) use shader;

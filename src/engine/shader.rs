//! WGSL modules and compute pipelines, compiled once and cached; bind-group layouts come from
//! naga's reflection of what each entry point really uses. Tested by `kernels-tests/shaders.rs`.

use super::{Error, Result};
use std::collections::HashMap;
use std::sync::Arc;

/// A kernel family's WGSL source, brought in with `include_str!`.
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

pub(crate) struct Pipeline {
    pub(crate) pipeline: wgpu::ComputePipeline,
    pub(crate) layout: wgpu::BindGroupLayout,
    /// Used bindings in binding order.
    pub(crate) slots: Vec<(u32, Slot)>,
}

struct Module {
    module: wgpu::ShaderModule,
    /// Entry point name -> used bindings (group 0), sorted.
    entries: HashMap<String, Vec<(u32, Slot)>>,
}

/// (shader, entry point, override constants as bit patterns).
type PipelineKey = (&'static str, &'static str, Vec<(&'static str, u64)>);

#[derive(Default)]
pub(crate) struct Cache {
    modules: HashMap<&'static str, Module>,
    pipelines: HashMap<PipelineKey, Arc<Pipeline>>,
}

/// Parses and validates WGSL with naga; returns per-entry-point binding use.
pub(crate) fn reflect(name: &str, source: &str) -> Result<HashMap<String, Vec<(u32, Slot)>>> {
    let module = naga::front::wgsl::parse_str(source).map_err(|e| Error::Shader {
        name: name.to_string(),
        message: e.emit_to_string(source),
    })?;
    let info = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::all(),
    )
    .validate(&module)
    .map_err(|e| Error::Shader {
        name: name.to_string(),
        message: e.emit_to_string(source),
    })?;
    let mut entries = HashMap::new();
    for (i, ep) in module.entry_points.iter().enumerate() {
        let fi = info.get_entry_point(i);
        let mut slots = Vec::new();
        for (handle, var) in module.global_variables.iter() {
            let Some(binding) = &var.binding else {
                continue;
            };
            if fi[handle].is_empty() {
                continue;
            }
            if binding.group != 0 {
                return Err(Error::Shader {
                    name: name.to_string(),
                    message: format!("`{}` uses group {}; only group 0", ep.name, binding.group),
                });
            }
            let slot = match var.space {
                naga::AddressSpace::Uniform => Slot::Uniform,
                naga::AddressSpace::Storage { access } => {
                    if access.contains(naga::StorageAccess::STORE) {
                        Slot::ReadWrite
                    } else {
                        Slot::Read
                    }
                }
                _ => {
                    return Err(Error::Shader {
                        name: name.to_string(),
                        message: format!("binding {} is not a buffer", binding.binding),
                    });
                }
            };
            slots.push((binding.binding, slot));
        }
        slots.sort_by_key(|s| s.0);
        entries.insert(ep.name.clone(), slots);
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
        let slots = m.entries.get(entry).cloned().ok_or_else(|| Error::Shader {
            name: shader.name.to_string(),
            message: format!("no entry point `{entry}`"),
        })?;
        let layout_entries: Vec<wgpu::BindGroupLayoutEntry> = slots
            .iter()
            .map(|&(binding, slot)| wgpu::BindGroupLayoutEntry {
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
            slots,
        });
        self.pipelines.insert(key, p.clone());
        Ok(p)
    }
}

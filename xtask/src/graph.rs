//! `cargo xtask graph`: draws a system description as SVG: init, the
//! processes it starts, the services each may call, and the devices each
//! holds.

use image_builder::system::{self, SystemDescription};
use std::fmt::Write as _;

const BOX_WIDTH: usize = 150;
const BOX_HEIGHT: usize = 44;
const GAP: usize = 40;

/// Reads the description at `path` (from the workspace root), writes the
/// SVG next to the images and prints where.
pub fn run(path: &str) -> Result<(), String> {
    let root = image_builder::workspace_root();
    let description = system::load(&root.join(path)).map_err(|error| error.to_string())?;
    let output = root.join("target").join("system-graph.svg");
    std::fs::create_dir_all(root.join("target")).map_err(|error| error.to_string())?;
    std::fs::write(&output, svg(&description)).map_err(|error| format!("{}: {error}", output.display()))?;
    println!("{}", output.display());
    Ok(())
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn node(out: &mut String, x: usize, y: usize, title: &str, detail: &str, fill: &str) {
    let _ = writeln!(
        out,
        "<rect x=\"{x}\" y=\"{y}\" width=\"{BOX_WIDTH}\" height=\"{BOX_HEIGHT}\" rx=\"6\" fill=\"{fill}\" stroke=\"#333\"/>\
         <text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-weight=\"bold\">{}</text>\
         <text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"11\">{}</text>",
        x + BOX_WIDTH / 2,
        y + 18,
        escape(title),
        x + BOX_WIDTH / 2,
        y + 34,
        escape(detail)
    );
}

fn edge(out: &mut String, from: (usize, usize), to: (usize, usize), label: &str, colour: &str) {
    let _ = writeln!(
        out,
        "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{colour}\" marker-end=\"url(#arrow)\"/>\
         <text x=\"{}\" y=\"{}\" font-size=\"10\" fill=\"{colour}\">{}</text>",
        from.0,
        from.1,
        to.0,
        to.1,
        (from.0 + to.0) / 2 + 4,
        (from.1 + to.1) / 2,
        escape(label)
    );
}

/// A call from one process to another: a curve under the row of boxes.
fn call(out: &mut String, from: usize, to: usize, y: usize, service: &str) {
    let middle = (from + to) / 2;
    let _ = writeln!(
        out,
        "<path d=\"M{from},{y} Q{middle},{} {to},{y}\" fill=\"none\" stroke=\"#1060c0\" marker-end=\"url(#arrow)\"/>\
         <text x=\"{middle}\" y=\"{}\" text-anchor=\"middle\" font-size=\"10\" fill=\"#1060c0\">calls {}</text>",
        y + 80,
        y + 52,
        escape(service)
    );
}

/// The SVG for `description`.
pub fn svg(description: &SystemDescription) -> String {
    let processes = &description.processes;
    let column = |index: usize| GAP + index * (BOX_WIDTH + GAP);
    let devices: Vec<(usize, String)> = processes
        .iter()
        .enumerate()
        .flat_map(|(index, process)| {
            let lines = process.interrupts.iter().map(|line| format!("irq {line}"));
            let ports = process
                .ports
                .iter()
                .map(|range| format!("ports {:#x}+{}", range.first, range.count));
            let memory = process
                .device_memory
                .iter()
                .map(|region| format!("mmio {:#x} x{}", region.address, region.pages));
            lines
                .chain(ports)
                .chain(memory)
                .map(move |device| (index, device))
                .collect::<Vec<_>>()
        })
        .collect();
    let width = column(processes.len().max(devices.len()).max(1)) + GAP;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"420\" font-family=\"sans-serif\" font-size=\"13\">\n\
         <defs><marker id=\"arrow\" markerWidth=\"8\" markerHeight=\"8\" refX=\"8\" refY=\"4\" orient=\"auto\">\
         <path d=\"M0,0 L8,4 L0,8 z\" fill=\"#333\"/></marker></defs>\n"
    );
    let init = (width / 2 - BOX_WIDTH / 2, 20);
    node(&mut out, init.0, init.1, "init", &description.init, "#f3e0c0");
    let row = 150;
    for (index, process) in processes.iter().enumerate() {
        let x = column(index);
        let detail = format!("prio {} · {} KiB", process.priority, process.memory_kib);
        node(&mut out, x, row, &process.name, &detail, "#d8e8f8");
        edge(
            &mut out,
            (init.0 + BOX_WIDTH / 2, init.1 + BOX_HEIGHT),
            (x + BOX_WIDTH / 2, row),
            "starts",
            "#999",
        );
        for service in &process.uses {
            if let Some(provider) = processes.iter().position(|other| other.provides.contains(service)) {
                let (from, to) = (x + BOX_WIDTH / 2 - 20, column(provider) + BOX_WIDTH / 2 + 20);
                call(&mut out, from, to, row + BOX_HEIGHT, service);
            }
        }
    }
    for (slot, (owner, device)) in devices.iter().enumerate() {
        let x = column(slot);
        node(&mut out, x, 320, device, "device", "#e0f0d8");
        edge(
            &mut out,
            (column(*owner) + BOX_WIDTH / 2 + 10, row + BOX_HEIGHT),
            (x + BOX_WIDTH / 2, 320),
            "holds",
            "#308030",
        );
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workspace_description_draws_every_process_service_and_device() {
        let root = image_builder::workspace_root();
        let description = system::load(&root.join("system.toml")).unwrap();
        let drawn = svg(&description);
        for process in &description.processes {
            assert!(
                drawn.contains(&format!(">{}</text>", process.name)),
                "{} missing",
                process.name
            );
        }
        let calls: usize = description.processes.iter().map(|process| process.uses.len()).sum();
        assert_eq!(drawn.matches(">calls ").count(), calls);
        assert!(drawn.contains(">irq 4</text>") && drawn.contains(">ports 0x3f8+8</text>"));
    }
}

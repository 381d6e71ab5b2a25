//! A small service graph laid out in layers and drawn as SVG: a template's diagram and a
//! project's canvas. A service sits one layer right of everything it needs, so arrows
//! (`api → Postgres`: api refers to Postgres) point left, from a service to what it uses.

use leptos::prelude::*;

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub name: String,
    pub detail: String,
    /// Where clicking the node goes, if anywhere.
    pub href: Option<String>,
    /// A CSS class for the status dot (`dot-running`…), if the node shows a status.
    pub dot: Option<String>,
}

/// One node placed: its column and row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    pub column: usize,
    pub row: usize,
}

pub const NODE_W: usize = 180;
pub const NODE_H: usize = 56;
const GAP_X: usize = 80;
const GAP_Y: usize = 24;

/// Columns by dependency depth (a node's column is one more than the deepest node it needs;
/// nodes in a cycle stay where they first land), rows in the order given.
pub fn layout(nodes: &[Node], edges: &[(usize, usize)]) -> Vec<Place> {
    let n = nodes.len();
    let mut column = vec![0usize; n];
    // Longest-path layering; at most n rounds, so a cycle cannot loop forever.
    for _ in 0..n {
        let mut changed = false;
        for &(from, to) in edges {
            if from < n && to < n && from != to && column[from] < column[to] + 1 && column[to] + 1 < n {
                column[from] = column[to] + 1;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let mut rows = vec![0usize; n.max(1)];
    column
        .iter()
        .map(|&c| {
            let row = rows[c];
            rows[c] += 1;
            Place { column: c, row }
        })
        .collect()
}

fn origin(p: Place) -> (usize, usize) {
    (p.column * (NODE_W + GAP_X), p.row * (NODE_H + GAP_Y))
}

/// The graph: cards (HTML, so a card is a real link with or without JavaScript) placed over an
/// SVG layer with arrows from each service to what it needs. SVG links are avoided on purpose:
/// an `<a>` made in the browser after hydration is an HTML element, and SVG shapes inside it
/// are not drawn.
#[component]
pub fn ServiceGraph(nodes: Vec<Node>, edges: Vec<(usize, usize)>, #[prop(into)] label: String) -> impl IntoView {
    let places = layout(&nodes, &edges);
    let width = places.iter().map(|p| origin(*p).0 + NODE_W).max().unwrap_or(NODE_W) + 2;
    let height = places.iter().map(|p| origin(*p).1 + NODE_H).max().unwrap_or(NODE_H) + 2;
    let arrows = edges
        .iter()
        .filter(|(a, b)| a != b && *a < places.len() && *b < places.len())
        .map(|&(from, to)| {
            let (fx, fy) = origin(places[from]);
            let (tx, ty) = origin(places[to]);
            let (x1, y1) = (fx as i64, (fy + NODE_H / 2) as i64);
            let (x2, y2) = ((tx + NODE_W) as i64 + 6, (ty + NODE_H / 2) as i64);
            let mid = (x1 + x2) / 2;
            let d = format!("M{x1},{y1} C{mid},{y1} {mid},{y2} {x2},{y2}");
            let title = format!("{} uses {}", nodes[from].name, nodes[to].name);
            let tooltip = title.clone();
            view! { <path class="graph-edge" d=d marker-end="url(#graph-arrow)" data-edge=title><title>{tooltip}</title></path> }
        })
        .collect_view();
    let cards = nodes
        .into_iter()
        .zip(places.iter().copied())
        .map(|(node, place)| {
            let (x, y) = origin(place);
            let style = format!("left: {}px; top: {}px; width: {NODE_W}px; height: {NODE_H}px", x + 1, y + 1);
            let body = view! {
                <span class="graph-name">
                    {node.dot.clone().map(|dot| view! { <span class=format!("graph-dot {dot}") aria-hidden="true"></span> })}
                    <span class="truncate">{node.name.clone()}</span>
                </span>
                <span class="graph-detail">{node.detail.clone()}</span>
            };
            match node.href.clone() {
                Some(href) => view! { <a class="graph-card" style=style href=href data-node=node.name.clone()>{body}</a> }.into_any(),
                None => view! { <div class="graph-card" style=style data-node=node.name.clone()>{body}</div> }.into_any(),
            }
        })
        .collect_view();
    view! {
        <div class="service-graph" role="group" aria-label=label style=format!("width: {width}px; height: {height}px")>
            <svg class="absolute inset-0" viewBox=format!("0 0 {width} {height}") width=width height=height aria-hidden="true">
                <defs>
                    <marker id="graph-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">
                        <path d="M0,0 L10,5 L0,10 z" class="graph-arrowhead"/>
                    </marker>
                </defs>
                {arrows}
            </svg>
            {cards}
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(n: usize) -> Vec<Node> {
        (0..n).map(|i| Node { name: format!("s{i}"), detail: String::new(), href: None, dot: None }).collect()
    }

    #[test]
    fn a_service_sits_right_of_what_it_needs() {
        // 0 = web → 1 = api → 2 = db, and web → 2.
        let p = layout(&nodes(3), &[(0, 1), (1, 2), (0, 2)]);
        assert_eq!(p[2], Place { column: 0, row: 0 });
        assert_eq!(p[1], Place { column: 1, row: 0 });
        assert_eq!(p[0], Place { column: 2, row: 0 });
    }

    #[test]
    fn independent_services_stack_in_one_column_and_a_cycle_terminates() {
        let p = layout(&nodes(3), &[]);
        assert_eq!(p.iter().map(|p| (p.column, p.row)).collect::<Vec<_>>(), [(0, 0), (0, 1), (0, 2)]);
        let c = layout(&nodes(2), &[(0, 1), (1, 0)]);
        assert!(c.iter().all(|p| p.column < 2));
    }
}

//! Warm starts: training from an existing network's weights instead of a seeded
//! initialisation. The network must have the planned architecture (the same layers, widths
//! and activations, and the same input width); the optimizer starts afresh. Continuing a
//! finished run for more epochs needs nothing here: its saved `TrainState` resumes like any
//! checkpoint.

use super::spec::{Plan, PlannedLayer};
use super::train::{EarlyState, Session, TrainError, TrainState};
use crate::nn::SpecError;
use crate::nn::math::network::{Layer, Network, Parametric};
use crate::nn::math::optim::Optimizer;
use crate::nn::math::schedule::ScheduleState;

/// `Ok` when `net` has exactly the layers `plan` builds (input width included); else what
/// differs, as a sentence.
pub fn check_architecture(
    plan: &Plan,
    net: &Network<f32>,
    check_input: bool,
) -> Result<(), String> {
    let describe = |l: &PlannedLayer| match l {
        PlannedLayer::Dense {
            units,
            activation,
            parametric,
            ..
        } => format!(
            "dense {units} {}{}",
            activation.name(),
            if *parametric { " (parametric)" } else { "" }
        ),
        PlannedLayer::Dropout(_) => "dropout".to_string(),
    };
    let k = net.members();
    if k != plan.members.max(1) {
        return Err(format!(
            "the model has {k} ensemble member(s), this spec {}; a warm start needs the same architecture",
            plan.members.max(1)
        ));
    }
    // (which inputs are numeric is known once the encoder is fitted: without the input
    // check, only the frequencies per input)
    let inputs = |m: usize| if check_input { m } else { 0 };
    let embedded = net
        .periodic()
        .map(|p| (inputs(p.columns.len()), p.omega.ncols()));
    let planned = plan
        .periodic
        .as_ref()
        .map(|p| (inputs(p.columns.len()), p.frequencies));
    if embedded != planned {
        let say = |e: Option<(usize, usize)>| match e {
            None => "no periodic embedding".to_string(),
            Some((0, k)) => format!("a periodic embedding of {k} frequencies per input"),
            Some((m, k)) => format!("a periodic embedding of {m} inputs × {k} frequencies"),
        };
        return Err(format!(
            "the model has {}, this spec {}; a warm start needs the same architecture",
            say(embedded),
            say(planned)
        ));
    }
    // Each dense layer with the parametric activation after it, if any.
    let mut layers: Vec<(&Layer<f32>, Option<&Parametric<f32>>)> = vec![];
    for l in &net.layers {
        match l {
            Layer::Ensemble(_) | Layer::Periodic(_) => {}
            Layer::Parametric(p) => match layers.last_mut() {
                Some((Layer::Dense(_), after @ None)) => *after = Some(p),
                _ => return Err("the model's parametric activation follows no dense layer".into()),
            },
            l => layers.push((l, None)),
        }
    }
    let last = layers.len().saturating_sub(1);
    let describe_net = |i: usize, (l, parametric): (&Layer<f32>, Option<&Parametric<f32>>)| {
        match (l, parametric) {
            (Layer::Dense(d), Some(p)) => {
                format!("dense {} {} (parametric)", d.b.len(), p.activation.name())
            }
            // An ensemble's last layer holds every member's head.
            (Layer::Dense(d), None) if i == last => {
                format!("dense {} {}", d.b.len() / k, d.activation.name())
            }
            (Layer::Dense(d), None) => format!("dense {} {}", d.b.len(), d.activation.name()),
            _ => "dropout".to_string(),
        }
    };
    if layers.len() != plan.layers.len() {
        return Err(format!(
            "the model has {} layers, this spec {}; a warm start needs the same architecture",
            layers.len(),
            plan.layers.len()
        ));
    }
    for (i, (p, l)) in plan.layers.iter().zip(layers).enumerate() {
        let (want, have) = (describe(p), describe_net(i, l));
        if want != have {
            return Err(format!(
                "layer {i} of the model is {have}, of this spec {want}; a warm start needs the same architecture"
            ));
        }
    }
    if check_input && net.input_dim != plan.input_dim {
        return Err(format!(
            "the model takes {} inputs, this job's data encodes to {}; a warm start needs the same input columns",
            net.input_dim, plan.input_dim
        ));
    }
    Ok(())
}

impl Session {
    /// The state a warm-started run begins in: epoch 0, `network`'s weights, a fresh
    /// optimizer. Refused (at `/init_model_id`) when the network is not this session's
    /// architecture.
    pub fn warm_state(&self, network: Network<f32>) -> Result<TrainState, TrainError> {
        check_architecture(&self.plan, &network, true)
            .map_err(|m| TrainError::Spec(vec![SpecError::new("/init_model_id", m)]))?;
        let mut network = network;
        if let Some(t) = &self.target_scaler {
            // A model predicts in the targets' units; this run trains on the standardised
            // scale.
            super::train::unfold_target_scale(&mut network, t);
        }
        let optimizer = Optimizer::new(&self.spec.optimizer, &network);
        Ok(TrainState {
            epoch: 0,
            network,
            optimizer,
            schedule: ScheduleState::new(),
            early: EarlyState::default(),
            finished: false,
        })
    }
}

/// A finished run's saved state made ready to run more epochs. A run that ended early
/// (early stopping, or stopped by its user) is reopened with early stopping's patience counted
/// afresh; a run that completed its epochs is left exactly as it was, so that continuing it
/// is the same as having asked for more epochs in the first place.
pub fn reopen(mut state: TrainState) -> TrainState {
    if state.finished {
        state.finished = false;
        state.early.wait = 0;
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::portable::preprocess::{Samples, Targets};
    use crate::nn::run::spec::TrainSpec;
    use ndarray::Array2;

    fn session(units: usize) -> Session {
        let spec: TrainSpec = serde_json::from_value(serde_json::json!({
            "layers": [{"units": units, "activation": "relu"}, {"units": 1}],
            "loss": "mse", "epochs": 2, "seed": 1
        }))
        .unwrap();
        let x = Array2::from_shape_fn((8, 3), |(i, j)| (i + j) as f32);
        let y = Array2::from_shape_fn((8, 1), |(i, _)| i as f32);
        let data = Samples {
            x,
            targets: Targets::Values(y),
        };
        Session::new(&spec, &data, None).unwrap()
    }

    #[test]
    fn a_warm_start_takes_the_weights_and_refuses_another_architecture() {
        let a = session(4);
        let mut net = a.initial_network();
        if let Layer::Dense(d) = &mut net.layers[0] {
            d.w.fill(0.25);
        }
        let st = a.warm_state(net.clone()).unwrap();
        assert_eq!((st.epoch, &st.network), (0, &net));
        let e = session(5).warm_state(net).unwrap_err();
        match e {
            TrainError::Spec(errs) => {
                assert_eq!(errs[0].pointer, "/init_model_id");
                assert!(
                    errs[0].message.contains("dense 4 relu"),
                    "{}",
                    errs[0].message
                );
            }
            other => panic!("{other:?}"),
        }
    }
}

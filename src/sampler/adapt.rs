//! Step-size adaptation by dual averaging (Hoffman & Gelman 2014, Stan's
//! defaults: gamma 0.05, t0 10, kappa 0.75, mu = log(10 eps0)). Not in the
//! papers; on by request. It steers the mean acceptance probability over
//! chains toward `delta` during warm-up, then the averaged step is used.

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct DualAveraging {
    pub delta: f64,
    mu: f64,
    gamma: f64,
    t0: f64,
    kappa: f64,
    t: f64,
    h_bar: f64,
    log_eps: f64,
    log_eps_bar: f64,
}

impl DualAveraging {
    pub fn new(eps0: f64, delta: f64) -> Self {
        Self {
            delta,
            mu: (10.0 * eps0).ln(),
            gamma: 0.05,
            t0: 10.0,
            kappa: 0.75,
            t: 0.0,
            h_bar: 0.0,
            log_eps: eps0.ln(),
            log_eps_bar: 0.0,
        }
    }

    /// Feeds the mean acceptance probability of the last step; returns the next step size.
    pub fn update(&mut self, accept_prob: f64) -> f64 {
        let a = if accept_prob.is_finite() {
            accept_prob
        } else {
            0.0
        };
        self.t += 1.0;
        let w = 1.0 / (self.t + self.t0);
        self.h_bar = (1.0 - w) * self.h_bar + w * (self.delta - a);
        self.log_eps = self.mu - self.t.sqrt() / self.gamma * self.h_bar;
        let eta = self.t.powf(-self.kappa);
        self.log_eps_bar = eta * self.log_eps + (1.0 - eta) * self.log_eps_bar;
        self.log_eps.exp()
    }

    /// Starts again from the current step (Stan does after each update of
    /// the metric): `mu = log(10 eps)`, the averages forgotten.
    pub fn restart(&mut self) {
        *self = Self::new(self.current_step(), self.delta);
    }

    /// The step size of the last update (during warm-up).
    pub fn current_step(&self) -> f64 {
        self.log_eps.exp()
    }

    /// The averaged step size to use after warm-up.
    pub fn final_step(&self) -> f64 {
        self.log_eps_bar.exp()
    }
}

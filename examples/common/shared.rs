//! What every example shares: the identity of its training data (stored in checkpoints) and
//! the in-repo judge, an MLP classifier trained on the real training images.

use latent::data::{FashionMnist, Split};
use latent::models::classifier::{Classifier, ClassifierTraining};
use latent::optim::Trainer;
use latent::{Engine, Result};

/// The training data's identity as checkpoints store it (a resume on other data is refused):
/// the data set's files (sizes and checksums) and how many of its training images are used.
pub fn data_identity(data: &FashionMnist, train: &Split) -> String {
    format!(
        "{}; the first {} training images",
        data.identity(),
        train.len()
    )
}

/// Trains the judge on all training images for `epochs` epochs (through the one trainer) and
/// returns it with its accuracy on the test images.
pub fn train_judge(
    engine: &Engine,
    data: &FashionMnist,
    epochs: u64,
    seed: u64,
) -> Result<(Classifier, f64)> {
    let judge = Classifier::new(engine, data.train.pixels_per_image(), 10, seed)?;
    let training = ClassifierTraining {
        epochs,
        seed,
        ..Default::default()
    };
    let config = training.config(data_identity(data, &data.train));
    let mut t = Trainer::new(judge, config, data.train.len())?;
    while t.epoch < epochs {
        let s = t.train_epoch(&data.train)?;
        println!(
            "judge {:>2}/{epochs}  loss {:.4}  {:7.0} img/s",
            s.epoch,
            s.term("loss"),
            s.images_per_second
        );
    }
    let accuracy = t.model.accuracy(&data.test)?;
    Ok((t.model, accuracy))
}

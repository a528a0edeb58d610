"""The lecture's training algorithm, written out: `train.loop: custom`.

    initialise the weights W                      (the builder, from the run's seed)
    repeat for each epoch:
        for each mini-batch (x, y):
            J(W)  = loss(y, f(x; W))              forward pass
            dJ/dW = tf.GradientTape().gradient    backpropagation
            W    <- optimizer step against dJ/dW  e.g. W - lr * dJ/dW for SGD

It does what `model.fit` does with the compiled model (its optimizer, loss, learning-rate
schedule and XLA setting), over the same tf.data splits, driving the same callback stack
through `keras.callbacks.CallbackList`: early stopping, learning-rate and dropout
schedules, gradient health, the backup (so resume works) and the MLflow logger see the same
hooks and logs as under fit.
"""

import keras
import tensorflow as tf

from tfdl.compile import make_metrics


def gradient_descent(
    model,
    train,
    *,
    validation_data,
    epochs: int,
    initial_epoch: int = 0,
    callbacks=(),
    verbose: int = 2,
    steps_per_epoch: int,
    metric_names=(),
    task: str = "multiclass",
    one_hot: bool = False,
) -> keras.callbacks.History:
    """Train the compiled `model` on the batches of `train` with the lecture's loop.

    Args:
        train: a repeated tf.data stream of (x, y) batches; `steps_per_epoch` of them are
            one epoch. validation_data: a dataset of (x, y) batches, one pass.
        metric_names, task, one_hot: the run's metrics as `tfdl.compile.make_metrics` makes
            them for compile, so the logs carry the same names and values as under fit.
        callbacks: Keras callbacks, called at the same points as fit calls them.

    Returns the History callback, as fit does.
    """
    loss_mean = keras.metrics.Mean(name="loss")  # the epoch's loss, averaged per sample
    metrics = make_metrics(metric_names, task, one_hot)
    optimizer = model.optimizer
    optimizer.build(model.trainable_variables)  # its slots exist before a backup is restored

    def train_step(x, y):
        with tf.GradientTape() as tape:
            y_pred = model(x, training=True)  # dropout and batch norm in training mode
            loss = model.compute_loss(x=x, y=y, y_pred=y_pred, training=True)  # (+ regularisers)
            scaled = optimizer.scale_loss(loss)  # unchanged unless mixed precision scales it
        gradients = tape.gradient(scaled, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
        loss_mean.update_state(loss, sample_weight=tf.shape(y)[0])
        for m in metrics:
            m.update_state(y, y_pred)
        return results()

    def results():
        return {m.name: m.result() for m in (loss_mean, *metrics)}

    # One compiled graph per step, XLA as fit would use it; a last, smaller batch traces once more.
    step = tf.function(train_step, jit_compile=bool(model.jit_compile), reduce_retracing=True)

    callbacks = keras.callbacks.CallbackList(
        list(callbacks),
        add_history=True,
        add_progbar=verbose != 0,
        verbose=verbose,
        epochs=epochs,
        steps=steps_per_epoch,
        model=model,
    )
    model.stop_training = False
    callbacks.on_train_begin()
    # The backup's restore sets the epoch to continue from, as under fit.
    initial_epoch = model._initial_epoch or initial_epoch
    epoch_logs = None
    batches = iter(train)  # one stream through all epochs, as fit reads it
    for epoch in range(initial_epoch, epochs):
        for m in (loss_mean, *metrics):
            m.reset_state()
        callbacks.on_epoch_begin(epoch)
        for batch in range(steps_per_epoch):
            x, y = next(batches)
            callbacks.on_train_batch_begin(batch)
            logs = step(x, y)
            callbacks.on_train_batch_end(batch, logs)
            if model.stop_training:
                break
        epoch_logs = {name: float(value) for name, value in results().items()}
        val_logs = model.evaluate(validation_data, callbacks=callbacks, return_dict=True, verbose=0)
        epoch_logs |= {f"val_{name}": float(value) for name, value in val_logs.items()}
        callbacks.on_epoch_end(epoch, epoch_logs)
        if model.stop_training:
            break
    optimizer.finalize_variable_values(model.trainable_variables)
    callbacks.on_train_end(logs=epoch_logs)
    return model.history

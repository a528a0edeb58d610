"""Lecture 3: data augmentation, random image transformations seen in training only.

Each epoch shows the network a slightly different copy of every image (flipped, turned,
zoomed, shifted), so it learns features that do not depend on those changes instead of
memorising pixels. Keras' random layers act only when called with `training=True`: in
`model.predict`, `evaluate` and `model(x)` they pass the images through unchanged.
"""

import keras


def augmentation(augment) -> keras.Sequential | None:
    """The augmentation layers an `Augmentation` config asks for, or None for none at all.

    `augment` is the config dumped to a dict (flip, rotation, zoom, translation), an
    `Augmentation` object, or None. Rotation is a fraction of a full turn (0.05 = +-18
    degrees); zoom and translation are fractions of the height and width.
    """
    if augment is None:
        return None
    if hasattr(augment, "model_dump"):
        augment = augment.model_dump()
    flip = augment.get("flip", "none")
    rotation = augment.get("rotation", 0.0)
    zoom = augment.get("zoom", 0.0)
    translation = augment.get("translation", 0.0)

    layers = []
    if flip != "none":
        layers.append(keras.layers.RandomFlip(flip, name="random_flip"))
    if rotation:
        layers.append(keras.layers.RandomRotation(rotation, name="random_rotation"))
    if zoom:
        # One factor f draws from [-f, f]: zoomed in or out by up to f.
        layers.append(keras.layers.RandomZoom(zoom, name="random_zoom"))
    if translation:
        layers.append(
            keras.layers.RandomTranslation(translation, translation, name="random_translation")
        )
    return keras.Sequential(layers, name="augmentation") if layers else None

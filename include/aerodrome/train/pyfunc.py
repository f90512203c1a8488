"""The MLflow pyfunc of every Aerodrome model: a saved predictor folder behind `predict(frame)`.

`mlflow.pyfunc.load_model("models:/<use case>@champion")` gives a model whose `predict` takes the
raw features (numbers and category strings, columns as in its signature) and returns the
positive-class probability or the predicted value. The model is logged as code (this file's
`set_model` call), not as a pickle, so loading runs no deserialised object. It needs the aerodrome
library, which every Aerodrome image installs, and the flavor's library (xgboost or torch), listed in
the model's pip requirements.
"""

from __future__ import annotations

import mlflow.models
import mlflow.pyfunc
import pandas as pd

from aerodrome.train.predictor import load_predictor

PREDICTOR_ARTIFACT = "predictor"


class TabularModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        self.predictor = load_predictor(context.artifacts[PREDICTOR_ARTIFACT])

    def predict(self, context, model_input: pd.DataFrame, params=None):  # DataFrame: MLflow infers no schema from it
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        return self.predictor.predict(frame)


mlflow.models.set_model(TabularModel())

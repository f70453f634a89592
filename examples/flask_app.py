"""The proxy route in a Flask app (sync client; one process or many with ``redis://`` storage).

export ORGA_API_KEY=sk_orga_ai_...  APP_JWT_SECRET=<the key your app signs its JWTs with>
flask --app examples/flask_app run --port 8000
"""

import os

from flask import Flask

from orga_ai.integrations.flask import create_blueprint
from orga_ai.proxy import JWTAuth

auth = JWTAuth(secret=os.environ["APP_JWT_SECRET"], audience="my-app", issuer="https://my-app.example/")

app = Flask(__name__)
app.register_blueprint(create_blueprint(authenticate=auth, rate_limit="10/minute"))

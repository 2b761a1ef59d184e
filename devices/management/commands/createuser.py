"""`manage.py createuser NAME`: an account for the chat page and the API, without the admin.

The password comes from --password-stdin (one line read from standard input, for
scripts), or else is asked for twice at the terminal. It is checked against
AUTH_PASSWORD_VALIDATORS unless --no-validate is given. Self-registration does not
exist: accounts are made by an operator (this command, or the admin site).
"""

import getpass
import sys

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction


class Command(BaseCommand):
    stealth_options = ("stdin",)
    help = "Create a user who can log in to the chat page and the API (not an admin; see createsuperuser)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--email", default="")
        parser.add_argument(
            "--password-stdin", action="store_true", help="Read the password from the first line of standard input."
        )
        parser.add_argument(
            "--no-validate", action="store_true", help="Accept a password the password validators refuse."
        )
        parser.add_argument("--staff", action="store_true", help="Let the user into the admin site too.")

    def handle(self, *args, username, email, password_stdin, no_validate, staff, **options):
        User = get_user_model()
        username = username.strip()
        if not username:
            raise CommandError("The username may not be blank.")
        if User.objects.filter(username=username).exists():
            raise CommandError(f"A user named {username!r} exists already.")
        password = self._password(password_stdin, options.get("stdin") or sys.stdin)
        user = User(username=username, email=email, is_staff=staff)
        try:
            user.full_clean(exclude=["password"])
            if not no_validate:
                validate_password(password, user)
        except ValidationError as error:
            raise CommandError("; ".join(error.messages)) from None
        user.set_password(password)
        with transaction.atomic():
            user.save()
        self.stdout.write(f"Created user {username!r} (id {user.pk}).")

    def _password(self, from_stdin: bool, stdin) -> str:
        if from_stdin:
            password = stdin.readline().rstrip("\r\n")
        else:
            if not stdin.isatty():
                raise CommandError("No terminal to ask for the password at: give it with --password-stdin.")
            password = getpass.getpass("Password: ")
            if getpass.getpass("Password (again): ") != password:
                raise CommandError("The passwords differ.")
        if not password:
            raise CommandError("The password may not be empty.")
        return password

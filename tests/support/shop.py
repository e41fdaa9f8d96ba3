"""The running local stack as its users see it: students, PayMob's page, the result page.

End-to-end tests drive the system only through what a student, a browser or PayMob can do
(HTTP to the gateway and the simulator); they read the emulator only to create a course, as
an admin's catalogue edit would, and to count enrolments.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

from coursepay.domain.records import Course
from coursepay.storage.catalog import CourseRepository
from devstack.paymob_sim import SANDBOX_CVV, SANDBOX_EXPIRY
from devstack.stack import LocalStack
from tests.support.polling import wait_until

MASTERCARD = "5123456789012346"
DECLINE_CARD = "4000000000000002"
# The e2e stack considers a payment without a callback stuck after this many seconds
# (the template says ten minutes), so reconciliation can be exercised within a test.
PENDING_THRESHOLD_SECONDS = 1


@dataclass(frozen=True)
class Student:
    student_id: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass(frozen=True)
class ResultPage:
    status: str
    html: str

    def has(self, element_id: str) -> bool:
        return f'id="{element_id}"' in self.html


class Shop:
    """The running system as its users see it: students, PayMob's page, the result page."""

    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        self.http = requests.Session()

    @property
    def simulator(self) -> Any:
        assert self.stack.simulator is not None
        return self.stack.simulator

    def student(self) -> Student:
        student_id = f"e2e-student-{uuid.uuid4().hex[:10]}"
        return Student(student_id, self.stack.token(student_id))

    def course(self, *, price_cents: int = 150_000, currency: str = "EGP") -> Course:
        """A fresh active course, stored as an admin's catalogue edit stores it."""
        assert self.stack.resources is not None
        course = Course(
            course_id=f"e2e-course-{uuid.uuid4().hex[:10]}",
            title=f"End-to-end course {uuid.uuid4().hex[:6]}",
            price_cents=price_cents,
            currency=currency,
        )
        return CourseRepository(self.stack.resources["CoursesTable"]).put(course)

    def enrolment_count(self, course_id: str) -> int:
        assert self.stack.resources is not None
        stored = CourseRepository(self.stack.resources["CoursesTable"]).get(
            course_id, consistent=True
        )
        assert stored is not None
        return stored.enrollment_count

    def checkout(self, student: Student, course_id: str, **headers: str) -> requests.Response:
        return self.http.post(
            f"{self.stack.api_url}/api/courses/{course_id}/checkout",
            headers={**student.headers, "Content-Type": "application/json", **headers},
            data="{}",
            timeout=20,
        )

    def start_payment(self, student: Student, course: Course) -> dict[str, Any]:
        response = self.checkout(student, course.course_id)
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    def pay(self, checkout_url: str, card_number: str = MASTERCARD) -> str:
        """Submit PayMob's checkout form as the browser does; returns where it redirects."""
        query = parse_qs(urlsplit(checkout_url).query)
        page = self.http.get(checkout_url, timeout=20)
        assert page.status_code == 200, page.text
        answer = self.http.post(
            f"{self.stack.paymob_url}/unifiedcheckout/pay",
            data={
                "client_secret": query["clientSecret"][0],
                "public_key": query["publicKey"][0],
                "method": "card",
                "card_number": card_number,
                "card_name": "Test Account",
                "card_expiry": SANDBOX_EXPIRY,
                "card_cvv": SANDBOX_CVV,
            },
            allow_redirects=False,
            timeout=20,
        )
        assert answer.status_code == 302, answer.text
        location: str = answer.headers["Location"]
        return location

    def status(self, student: Student, payment_id: str) -> dict[str, Any]:
        response = self.http.get(
            f"{self.stack.api_url}/api/payments/{payment_id}/status",
            headers=student.headers,
            timeout=20,
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def wait_for(
        self,
        student: Student,
        payment_id: str,
        *,
        status: str,
        enrolled: bool,
        timeout: float = 15.0,
    ) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            seen = self.status(student, payment_id)
            return seen if (seen["status"], seen["enrolled"]) == (status, enrolled) else None

        return wait_until(
            reached, timeout=timeout, interval=0.2, message=f"{payment_id} {status}/{enrolled}"
        )

    def result_page(self, url: str) -> ResultPage:
        response = self.http.get(url, timeout=20)
        assert response.status_code == 200, response.text
        match = re.search(r'id="payment-status"[^>]*data-status="([^"]+)"', response.text)
        assert match, response.text[:500]
        return ResultPage(match.group(1), response.text)

    def enrolments(self, student: Student) -> Any:
        response = self.http.get(
            f"{self.stack.api_url}/api/me/enrollments", headers=student.headers, timeout=20
        )
        assert response.status_code == 200, response.text
        return response.json()

    def run_reconciler(self) -> dict[str, Any]:
        response = self.http.post(
            f"{self.stack.api_url}/_dev/schedules/ReconcileFunction/run", timeout=60
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

"""Demo courses for the local stack: one per currency shape the platform must get right.

Prices are integer minor units: EGP has two decimals, OMR three (49.875 OMR is 49875 baisa).
Seeding goes through the application's own course repository, so a demo course is stored
exactly as an admin's edit would store it; re-seeding keeps each course's enrolment count.
"""

from __future__ import annotations

from typing import Any

from coursepay.domain.records import Course
from coursepay.storage.catalog import CourseRepository

DEMO_COURSES: tuple[Course, ...] = (
    Course(
        course_id="course-python-101",
        title="Python for Data Analysis",
        price_cents=150_000,  # 1,500.00 EGP
        currency="EGP",
    ),
    Course(
        course_id="course-cloud-muscat",
        title="Cloud Foundations (Muscat cohort)",
        price_cents=49_875,  # 49.875 OMR
        currency="OMR",
    ),
    Course(
        course_id="course-sql-riyadh",
        title="SQL for Analysts (Riyadh cohort)",
        price_cents=29_900,  # 299.00 SAR
        currency="SAR",
    ),
)


def seed_courses(courses_table: str, client: Any = None) -> list[Course]:
    """Create or refresh the demo courses; returns them as stored."""
    repository = CourseRepository(courses_table, client=client)
    return [repository.put(course) for course in DEMO_COURSES]

"""An excerpt of optuna 5.1.0's RDB storage models (optuna/storages/_rdb/models.py and
optuna/trial/_state.py; https://github.com/optuna/optuna, MIT licence, Copyright (c)
2018 Preferred Networks, Inc.): the studies, trials and trial_intermediate_values
tables as optuna declares them, with their two Enum columns. Relationships, methods
and the datetime properties are left out; columns, types and constraints are as
published."""

from __future__ import annotations

import datetime
import enum
from typing import Any

from sqlalchemy import DateTime, Enum, Float, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, declarative_base, mapped_column

MAX_INDEXED_STRING_LENGTH = 512
FLOAT_PRECISION = 53

BaseModel: Any = declarative_base()


class TrialState(enum.IntEnum):
    RUNNING = 0
    COMPLETE = 1
    PRUNED = 2
    FAIL = 3
    WAITING = 4


class StudyModel(BaseModel):
    __tablename__ = "studies"
    study_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_name: Mapped[str] = mapped_column(
        String(MAX_INDEXED_STRING_LENGTH), index=True, unique=True, nullable=False
    )


class TrialModel(BaseModel):
    __tablename__ = "trials"
    trial_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[int] = mapped_column(Integer, nullable=True)
    study_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("studies.study_id"), index=True
    )
    state: Mapped[TrialState] = mapped_column(Enum(TrialState), nullable=False)
    _datetime_start_utc: Mapped[datetime.datetime | None] = mapped_column(
        "datetime_start", DateTime
    )
    _datetime_complete_utc: Mapped[datetime.datetime | None] = mapped_column(
        "datetime_complete", DateTime
    )


class TrialIntermediateValueModel(BaseModel):
    class TrialIntermediateValueType(enum.Enum):
        FINITE = 1
        INF_POS = 2
        INF_NEG = 3
        NAN = 4

    __tablename__ = "trial_intermediate_values"
    __table_args__: Any = (UniqueConstraint("trial_id", "step"),)
    trial_intermediate_value_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    trial_id: Mapped[int] = mapped_column(Integer, ForeignKey("trials.trial_id"), nullable=False)
    step: Mapped[int] = mapped_column(Integer, nullable=False)
    intermediate_value: Mapped[float | None] = mapped_column(
        Float(precision=FLOAT_PRECISION), nullable=True
    )
    intermediate_value_type: Mapped[TrialIntermediateValueType] = mapped_column(
        Enum(TrialIntermediateValueType), nullable=False
    )

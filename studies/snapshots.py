"""Pareto-front snapshots: our own tables beside Optuna's, never touching Optuna's.

After every finished trial that changes the front, the runner records a snapshot: the study, a
running snapshot number, how many trials had finished, when, the hypervolume of the front in
(accuracy, throughput) against the reference point (0, 0), and the member trials. History, plots
and reports read these rows instead of recomputing fronts from all trials.

Those are the *observed* fronts (per trial, as ``study.best_trials``). Beside them, the
*confident* snapshots (``explore_confident_snapshots`` and ``_members``) record the noise-aware
front over configurations after every completed trial: the pooled noise, the plausible front's
hypervolume with its interval, and every configuration not confidently dominated with its
replicate count, means, 95% intervals and probability of being Pareto-optimal. They show how the
confident front grew. Older databases get these tables added the first time a run records one.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Boolean,
    DateTime,
    Double,
    Engine,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
    create_engine,
    delete,
    select,
)
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from studies.pareto import hypervolume_2d

__all__ = ["ConfidentSnapshot", "Snapshot", "SnapshotStore", "REFERENCE_POINT"]

REFERENCE_POINT = (0.0, 0.0)  # (accuracy, throughput): every useful model dominates it


class _Base(DeclarativeBase):
    pass


def _bound() -> Any:
    """A nullable figure: an interval's end, or a noise estimate, NULL while the noise is not
    known."""
    return mapped_column(Double, nullable=True)


class _Row(_Base):
    """Every table's surrogate key."""

    __abstract__ = True

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)


class SnapshotRow(_Row):
    __tablename__ = "explore_snapshots"
    __table_args__ = (UniqueConstraint("study_name", "number"),)

    study_name: Mapped[str] = mapped_column(String(512), index=True)
    number: Mapped[int] = mapped_column(Integer)  # 0, 1, 2, … per study
    n_finished: Mapped[int] = mapped_column(Integer)  # COMPLETE + PRUNED trials at that time
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    hypervolume: Mapped[float] = mapped_column(Double)
    ref_accuracy: Mapped[float] = mapped_column(Double)
    ref_throughput: Mapped[float] = mapped_column(Double)
    front_size: Mapped[int] = mapped_column(Integer)
    members: Mapped[list[MemberRow]] = relationship(
        back_populates="snapshot", cascade="all, delete-orphan", order_by="MemberRow.trial_number"
    )


class MemberRow(_Row):
    __tablename__ = "explore_snapshot_members"

    snapshot_id: Mapped[int] = mapped_column(
        ForeignKey("explore_snapshots.id", ondelete="CASCADE"), index=True
    )
    trial_number: Mapped[int] = mapped_column(Integer)
    accuracy: Mapped[float] = mapped_column(Double)
    throughput: Mapped[float] = mapped_column(Double)
    snapshot: Mapped[SnapshotRow] = relationship(back_populates="members")


class ConfidentRow(_Row):
    __tablename__ = "explore_confident_snapshots"
    __table_args__ = (UniqueConstraint("study_name", "n_finished"),)

    study_name: Mapped[str] = mapped_column(String(512), index=True)
    n_finished: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    configurations: Mapped[int] = mapped_column(Integer)
    replicates: Mapped[int] = mapped_column(Integer)
    noise_df: Mapped[int] = mapped_column(Integer)  # 0: the noise is not known yet
    accuracy_sd: Mapped[float | None] = _bound()
    log_throughput_sd: Mapped[float | None] = _bound()
    hypervolume: Mapped[float] = mapped_column(Double)
    hypervolume_low: Mapped[float | None] = _bound()
    hypervolume_high: Mapped[float | None] = _bound()
    plausible: Mapped[int] = mapped_column(Integer)
    dominated: Mapped[int] = mapped_column(Integer)
    members: Mapped[list[ConfidentMemberRow]] = relationship(
        back_populates="snapshot", cascade="all, delete-orphan",
        order_by="ConfidentMemberRow.throughput")


class ConfidentMemberRow(_Row):
    __tablename__ = "explore_confident_members"

    snapshot_id: Mapped[int] = mapped_column(
        ForeignKey("explore_confident_snapshots.id", ondelete="CASCADE"), index=True)
    configuration: Mapped[str] = mapped_column(String(64))
    trials: Mapped[str] = mapped_column(String(1000))  # trial numbers, comma-separated
    replicates: Mapped[int] = mapped_column(Integer)
    accuracy: Mapped[float] = mapped_column(Double)
    accuracy_low: Mapped[float | None] = _bound()
    accuracy_high: Mapped[float | None] = _bound()
    throughput: Mapped[float] = mapped_column(Double)
    throughput_low: Mapped[float | None] = _bound()
    throughput_high: Mapped[float | None] = _bound()
    probability: Mapped[float] = mapped_column(Double)
    plausible: Mapped[bool] = mapped_column(Boolean)
    snapshot: Mapped[ConfidentRow] = relationship(back_populates="members")


@dataclass(frozen=True)
class ConfidentSnapshot:
    """One recorded noise-aware front (see the module docstring)."""

    n_finished: int
    created_at: dt.datetime
    configurations: int
    replicates: int
    noise_df: int
    hypervolume: float
    hypervolume_low: float | None
    hypervolume_high: float | None
    plausible: int
    dominated: int
    members: tuple[dict[str, Any], ...]

    def to_dict(self) -> dict[str, Any]:
        return {**{k: v for k, v in self.__dict__.items() if k != "created_at"},
                "created_at": self.created_at.isoformat(), "members": list(self.members)}


def _to_confident(row: ConfidentRow) -> ConfidentSnapshot:
    members = tuple({
        "configuration": m.configuration, "trials": [int(x) for x in m.trials.split(",") if x],
        "replicates": m.replicates, "accuracy": [m.accuracy, m.accuracy_low, m.accuracy_high],
        "throughput": [m.throughput, m.throughput_low, m.throughput_high],
        "probability": m.probability, "plausible": m.plausible} for m in row.members)
    return ConfidentSnapshot(row.n_finished, row.created_at, row.configurations, row.replicates,
                             row.noise_df, row.hypervolume, row.hypervolume_low,
                             row.hypervolume_high, row.plausible, row.dominated, members)


@dataclass(frozen=True)
class Snapshot:
    """One recorded front."""

    number: int
    n_finished: int
    created_at: dt.datetime
    hypervolume: float
    reference: tuple[float, float]
    members: tuple[tuple[int, float, float], ...]  # (trial number, accuracy, throughput)

    @property
    def front_size(self) -> int:
        return len(self.members)


def _to_snapshot(row: SnapshotRow) -> Snapshot:
    return Snapshot(
        number=row.number,
        n_finished=row.n_finished,
        created_at=row.created_at,
        hypervolume=row.hypervolume,
        reference=(row.ref_accuracy, row.ref_throughput),
        members=tuple((m.trial_number, m.accuracy, m.throughput) for m in row.members),
    )


class SnapshotStore:
    """Reads and writes snapshots through one SQLAlchemy engine."""

    def __init__(self, engine: Engine, create: bool = True) -> None:
        """``create=False`` (browsing): never create the tables; a database without them reads
        as one without snapshots."""
        self.engine = engine
        self.has_snapshots = self.has_confident = True
        if not create:
            from sqlalchemy import inspect

            names = set(inspect(engine).get_table_names())
            self.has_snapshots = SnapshotRow.__tablename__ in names
            self.has_confident = ConfidentRow.__tablename__ in names  # older: none yet
            return
        # Workers starting together race between "does the table exist" and CREATE TABLE;
        # the loser fails ("already exists"), then finds the tables on its next look.
        for attempt in range(5):
            try:
                _Base.metadata.create_all(engine, checkfirst=True)
                break
            except DBAPIError:
                if attempt == 4:
                    raise
                time.sleep(0.1 * (attempt + 1))

    @classmethod
    def from_url(cls, url: str) -> SnapshotStore:
        kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
        return cls(create_engine(url, **kwargs))

    @contextmanager
    def _session(self) -> Iterator[Session]:
        session = Session(self.engine)
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def record(
        self,
        study_name: str,
        n_finished: int,
        members: Sequence[tuple[int, float, float]],
        reference: tuple[float, float] = REFERENCE_POINT,
    ) -> Snapshot | None:
        """Append a snapshot if the front differs from the last one; return it (or None).

        Safe under concurrency: snapshot numbers are unique per study (a constraint); a writer
        that loses a race re-reads and retries, and a writer whose view is older than the last
        snapshot (fewer finished trials) gives way, so numbers never repeat or interleave.
        """
        wanted = tuple(sorted((int(n), float(a), float(t)) for n, a, t in members))
        for attempt in range(20):
            try:
                with self._session() as session:
                    last = session.scalars(
                        select(SnapshotRow)
                        .where(SnapshotRow.study_name == study_name)
                        .order_by(SnapshotRow.number.desc())
                        .limit(1)
                    ).first()
                    if last is not None:
                        if last.n_finished > n_finished:
                            return None  # someone recorded a newer front already
                        if [m.trial_number for m in last.members] == [n for n, _, _ in wanted]:
                            return None
                    row = SnapshotRow(
                        study_name=study_name,
                        number=0 if last is None else last.number + 1,
                        n_finished=n_finished,
                        created_at=dt.datetime.now(dt.UTC).replace(tzinfo=None),
                        hypervolume=hypervolume_2d([(a, t) for _, a, t in wanted], reference),
                        ref_accuracy=reference[0],
                        ref_throughput=reference[1],
                        front_size=len(wanted),
                        members=[MemberRow(trial_number=n, accuracy=a, throughput=t)
                                 for n, a, t in wanted],
                    )
                    session.add(row)
                    session.flush()
                    return _to_snapshot(row)
            except (IntegrityError, OperationalError):
                time.sleep(min(0.05 * 2**attempt, 1.0))
        raise RuntimeError(f"could not record a Pareto snapshot for {study_name!r}")

    def record_confident(self, study_name: str, n_finished: int, front: Any) -> bool:
        """Record the noise-aware front (a :class:`studies.replicates.ConfiguredFront`) at
        ``n_finished`` trials; False when a snapshot at that count exists already."""
        noisy = front.front
        row = ConfidentRow(
            study_name=study_name, n_finished=n_finished,
            created_at=dt.datetime.now(dt.UTC).replace(tzinfo=None),
            configurations=len(front.configs), replicates=front.replicates,
            noise_df=noisy.noise.df, accuracy_sd=noisy.noise.accuracy_sd,
            log_throughput_sd=noisy.noise.log_throughput_sd, hypervolume=noisy.hypervolume,
            hypervolume_low=noisy.hypervolume_low, hypervolume_high=noisy.hypervolume_high,
            plausible=len(noisy.plausible), dominated=len(noisy.dominated))
        dominated = set(noisy.dominated)
        for e in noisy.estimates:
            if e.config in dominated:
                continue
            row.members.append(ConfidentMemberRow(
                configuration=e.config[:64], trials=",".join(str(n) for n in e.trials)[:1000],
                replicates=e.n, accuracy=e.accuracy.mean, accuracy_low=e.accuracy.low,
                accuracy_high=e.accuracy.high, throughput=e.throughput.mean,
                throughput_low=e.throughput.low, throughput_high=e.throughput.high,
                probability=noisy.probability[e.config],
                plausible=e.config in set(noisy.plausible)))
        try:
            with self._session() as session:
                session.add(row)
            return True
        except IntegrityError:  # another worker recorded this count
            return False

    def confident_history(self, study_name: str) -> list[ConfidentSnapshot]:
        if not self.has_confident:
            return []
        with self._session() as session:
            rows = session.scalars(
                select(ConfidentRow).where(ConfidentRow.study_name == study_name)
                .order_by(ConfidentRow.n_finished)).all()
            return [_to_confident(r) for r in rows]

    def history(self, study_name: str) -> list[Snapshot]:
        if not self.has_snapshots:
            return []
        with self._session() as session:
            rows = session.scalars(
                select(SnapshotRow)
                .where(SnapshotRow.study_name == study_name)
                .order_by(SnapshotRow.number)
            ).all()
            return [_to_snapshot(r) for r in rows]

    def latest(self, study_name: str) -> Snapshot | None:
        snaps = self.history(study_name)
        return snaps[-1] if snaps else None

    def delete_study(self, study_name: str) -> int:
        """Remove a study's snapshots; returns how many."""
        with self._session() as session:
            ids = session.scalars(
                select(SnapshotRow.id).where(SnapshotRow.study_name == study_name)
            ).all() if self.has_snapshots else []
            if ids:
                session.execute(delete(MemberRow).where(MemberRow.snapshot_id.in_(ids)))
                session.execute(delete(SnapshotRow).where(SnapshotRow.id.in_(ids)))
            confident = session.scalars(
                select(ConfidentRow.id).where(ConfidentRow.study_name == study_name)
            ).all() if self.has_confident else []
            if confident:
                session.execute(delete(ConfidentMemberRow)
                                .where(ConfidentMemberRow.snapshot_id.in_(confident)))
                session.execute(delete(ConfidentRow).where(ConfidentRow.id.in_(confident)))
            return len(ids)
